"""What every command shares: a quiet terminal, and which errors are a user's mistake."""
