# Empty dependencies file for clipengine.
# This may be replaced when dependencies are built.
