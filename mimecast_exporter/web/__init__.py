"""The exporter's HTTP side: what it serves, and how it guards it.

==================  =====================================================
``server.py``       the endpoints (metrics, landing page, health, ready)
``landing.py``      the landing page's HTML
``status.*``        its frame and style (status.html, status.css)
``config.py``       ``--web.config.file``, exporter-toolkit's format
``tls.py``          its ``tls_server_config`` and the SSLContext
``auth.py``         basic auth, rate limit, client SANs per request
``watch.py``        keeps the web config in force, reloading on change
``listen.py``       ``--web.listen-address`` and binding it
``connections.py``  bounds on connections: how many, how idle
==================  =====================================================

Nothing here calls Mimecast: the endpoints read what the poller stored.
"""
