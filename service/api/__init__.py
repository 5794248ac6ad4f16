"""The REST API: dependencies, error handlers, upload streaming and one router per resource."""
