"""Device drivers: bytes from card readers, scales, tag readers and pins, turned into typed
readings at the edge. Every serial device is named by a pyserial URL; parsers are pure
functions over bytes, fed by one reader loop per port.
"""
