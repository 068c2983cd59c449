# Empty compiler generated dependencies file for clipengine.
# This may be replaced when dependencies are built.
