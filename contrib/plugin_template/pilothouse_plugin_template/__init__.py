"""A worked example of a third-party Pilothouse plugin: copy this folder to start your own."""
