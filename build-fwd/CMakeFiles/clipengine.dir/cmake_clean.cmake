file(REMOVE_RECURSE
  "CMakeFiles/clipengine.dir/engine/src/engine.c.o"
  "CMakeFiles/clipengine.dir/engine/src/engine.c.o.d"
  "lib/libclipengine.pdb"
  "lib/libclipengine.so"
  "lib/libclipengine.so.0"
  "lib/libclipengine.so.0.1.0"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/clipengine.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
