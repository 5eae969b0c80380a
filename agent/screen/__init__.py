"""The clerk's screen: the station's pages served by the agent to a browser on the station.

A thin view over the station part: it shows the pure purchase flow's state and feeds the
clerk's taps to the same flow the terminal console feeds. It adds no business rule.
"""
