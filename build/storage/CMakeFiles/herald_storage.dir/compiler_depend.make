# Empty compiler generated dependencies file for herald_storage.
# This may be replaced when dependencies are built.
