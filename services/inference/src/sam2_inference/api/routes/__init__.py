"""The routers the app includes."""
