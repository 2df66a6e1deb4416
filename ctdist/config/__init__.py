"""What a command is told: frozen option trees, their flags, and their JSON."""
