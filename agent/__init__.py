"""cocoon-agent: the trusted edge of the cocoon supply-chain-finance chain.

The agent records what happens at a purchase station or a supervised warehouse as signed,
hash-chained events, keeps them in a durable outbox and forwards them to the bank's ingest.
"""

__version__ = "0.1.0"
