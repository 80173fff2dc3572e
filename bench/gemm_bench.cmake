# gemm_bench compares qarl's deterministic GEMM with OpenBLAS (the only place qarl links it).
find_library(QARL_OPENBLAS_LIB NAMES openblas)
find_path(QARL_CBLAS_INCLUDE NAMES cblas.h PATH_SUFFIXES openblas-pthread openblas)
if(TARGET gemm_bench AND QARL_OPENBLAS_LIB AND QARL_CBLAS_INCLUDE)
  target_link_libraries(gemm_bench PRIVATE ${QARL_OPENBLAS_LIB})
  target_include_directories(gemm_bench PRIVATE ${QARL_CBLAS_INCLUDE})
  target_compile_definitions(gemm_bench PRIVATE QARL_HAVE_OPENBLAS=1)
endif()
