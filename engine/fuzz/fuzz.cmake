# libFuzzer + ASan/UBSan harnesses for the parsers of untrusted files in engine/src (the JSON
# parser, the safetensors parser, the weights loader), built instead of the library when
# CLIP_FUZZ=ON, in a build folder of their own and with clang:
#   cmake -S . -B build-fuzz -DCLIP_FUZZ=ON -DCMAKE_C_COMPILER=clang && cmake --build build-fuzz
# Each harness compiles the sources it exercises itself, so every line of them is instrumented.
# `make fuzz` builds and runs them (scripts/fuzz.sh); their seeds are engine/fuzz/corpus/NAME
# and the committed tiny models.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CLIP_FUZZ=ON needs clang (libFuzzer); configure with -DCMAKE_C_COMPILER=clang "
                      "(Debian: apt-get install clang libclang-rt-14-dev, as scripts/install-deps.sh does)")
endif()

set(CLIP_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
                    -fno-omit-frame-pointer -g)
set(CLIP_FUZZ_SRC ${CMAKE_SOURCE_DIR}/engine/src)
set(CLIP_FUZZ_TARGETS
    "json:json.c"
    "safetensors:json.c safetensors.c"
    "weights:json.c safetensors.c weights.c")
foreach(entry ${CLIP_FUZZ_TARGETS})
  string(REPLACE ":" ";" parts "${entry}")
  list(GET parts 0 name)
  list(GET parts 1 files)
  separate_arguments(files)
  list(TRANSFORM files PREPEND ${CLIP_FUZZ_SRC}/)
  add_executable(fuzz_${name} ${CMAKE_SOURCE_DIR}/engine/fuzz/fuzz_${name}.c ${files})
  target_include_directories(fuzz_${name} PRIVATE ${CMAKE_SOURCE_DIR}/engine/include ${CLIP_FUZZ_SRC})
  target_compile_definitions(fuzz_${name} PRIVATE CLIP_VERSION_STRING="${PROJECT_VERSION}")
  target_compile_options(fuzz_${name} PRIVATE ${CLIP_FUZZ_FLAGS} ${CLIP_C_WARNINGS})
  target_link_options(fuzz_${name} PRIVATE ${CLIP_FUZZ_FLAGS})
  target_link_libraries(fuzz_${name} PRIVATE m)
endforeach()
