# CUDA backend build rules, included by the top CMakeLists.txt. CLIP_CUDA=ON requires a
# toolkit; AUTO builds it when nvcc is found; OFF skips it.
if(NOT CLIP_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER)
    # Debian's nvcc 11.8 supports gcc up to 11; Debian 12's default gcc is 12.
    find_program(CLIP_NVCC nvcc)
    if(CLIP_NVCC)
      execute_process(COMMAND ${CLIP_NVCC} --version OUTPUT_VARIABLE CLIP_NVCC_VERSION)
      if(CLIP_NVCC_VERSION MATCHES "release 11\\.")
        find_program(CLIP_GXX11 g++-11)
        if(CLIP_GXX11)
          set(CMAKE_CUDA_HOST_COMPILER ${CLIP_GXX11} CACHE FILEPATH "host compiler for nvcc")
        endif()
      endif()
    endif()
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    # The ops (one kernel family each), then the host side by concern under backend.cu.
    set(CLIP_CUDA_SOURCES
      attention.cu convert.cu gelu.cu gemm.cu layernorm.cu patch_embed.cu resize.cu
      resize_plan.cu text_embed.cu
      backend.cu debug.cu decode.cu device.cu graphs.cu memory.cu staging.cu text_tower.cu
      thread_pool.cu)
    list(TRANSFORM CLIP_CUDA_SOURCES PREPEND ${CMAKE_SOURCE_DIR}/cuda/)
    message(STATUS "clipengine: CUDA backend ON (${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES})")
    target_sources(clipengine PRIVATE ${CLIP_CUDA_SOURCES})
    target_compile_definitions(clipengine PRIVATE CLIP_HAVE_CUDA=1)
    target_include_directories(clipengine PRIVATE ${CMAKE_SOURCE_DIR}/cuda)
    target_compile_options(clipengine PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--use_fast_math -lineinfo>)
    find_package(Threads REQUIRED)
    target_link_libraries(clipengine PRIVATE CUDA::cudart CUDA::cublasLt Threads::Threads)
    # nvJPEG (part of the toolkit) for clip_engine_embed_encoded's device decoding.
    if(TARGET CUDA::nvjpeg)
      target_link_libraries(clipengine PRIVATE CUDA::nvjpeg)
    else()
      find_library(CLIP_NVJPEG_LIB nvjpeg HINTS ${CUDAToolkit_LIBRARY_DIR} REQUIRED)
      target_link_libraries(clipengine PRIVATE ${CLIP_NVJPEG_LIB})
    endif()
    # The target exists before this file runs, so it did not pick the variable up.
    set_target_properties(clipengine PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                          CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
    set(CLIP_HAVE_CUDA ON)
    # The backend's extras header is installed only with the backend that exports them.
    set_property(TARGET clipengine APPEND PROPERTY PUBLIC_HEADER
                 ${CMAKE_SOURCE_DIR}/engine/include/clipengine_cuda.h)
  elseif(CLIP_CUDA STREQUAL "ON")
    message(FATAL_ERROR "CLIP_CUDA=ON but no CUDA compiler was found")
  else()
    message(STATUS "clipengine: no CUDA toolkit found, CUDA backend OFF")
  endif()
endif()
