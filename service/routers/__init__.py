"""The API's routers, one per concern, mounted by :func:`street2shop.service.app.create_app`."""
