"""The sandbox's GitHub: seeded organisation (``data``) and the HTTP routes serving it (``routes``)."""
