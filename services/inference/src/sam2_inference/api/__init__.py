"""HTTP only: the app, its dependencies, the gateway's hop, health and the video routes."""
