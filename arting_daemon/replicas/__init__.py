"""Several daemons, one service: what replicas share through Redis (``redis_url``).

``link`` is the connection and the messages between replicas; the rest implement, over
Redis, the interfaces the embedded default keeps in the data directory: job records
with leases (``jobs``), user keys (``keys``), their limits (``limits``), the token pool's
health and slots (``tokens``), and AUTOMATIC1111's state (``a1111``)."""
