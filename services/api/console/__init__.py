"""The admin console: HTML pages rendered by the service itself at /console."""
