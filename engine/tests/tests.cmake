# Registers the C tests (engine/tests/test_*.c, one executable each) and the Python
# reference checks (tests/reference/test_*.py) with CTest.
file(GLOB CLIP_C_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/engine/tests/test_*.c)
foreach(src ${CLIP_C_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE clipengine m)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/engine/src)
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT
    "CLIP_SOURCE_DIR=${CMAKE_SOURCE_DIR};CLIP_BUILD_DIR=${CMAKE_BINARY_DIR}")
endforeach()

set(CLIP_PYTHON "/usr/bin/python3" CACHE FILEPATH "Python with torch, numpy, PIL (Debian's)")
file(GLOB CLIP_PY_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/reference/test_*.py)
foreach(src ${CLIP_PY_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME py_${name} COMMAND ${CLIP_PYTHON} ${src} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(py_${name} PROPERTIES ENVIRONMENT
    "CLIPENGINE_LIB=$<TARGET_FILE:clipengine>;CLIP_SOURCE_DIR=${CMAKE_SOURCE_DIR};CLIP_BUILD_DIR=${CMAKE_BINARY_DIR}")
endforeach()
