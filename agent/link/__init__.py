"""The link to the bank: the MQTT client (the one module that imports paho), the store-and-forward
uplink, and the link's own process with its parent-side watcher.
"""
