"""Many edge servers: the camera inventory, placement of cameras on servers, per-server configs."""
