"""SQL in, dataclasses out. Every function takes an open connection (from db.as_user/as_service) first and never
commits: the caller's transaction decides."""
