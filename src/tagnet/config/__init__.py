"""Settings: every setting of every command once, with its type, default, meaning and declared constraints."""
