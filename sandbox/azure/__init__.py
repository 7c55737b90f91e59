"""The sandbox's Azure DevOps: seeded organisation (``data``) and the HTTP routes serving it (``routes``)."""
