"""The cocoon purchase station: the pure purchase flow, weighing, sales and vouchers, the card
desk, the blacklist, the stored price tables, the clerk's console and view, the effect runner
that carries out what the flow asks for, and the part that wires the station into the agent.
"""
