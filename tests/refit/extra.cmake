# refit: shared fakes and deterministic transport cases for the unit tests; the rollout-side
# peer process of the two-process transport tests; the MPI wire and its mpirun test (only
# when MPI is found).
set(QARL_REFIT_TEST_HELPERS
    ${CMAKE_CURRENT_LIST_DIR}/refit_fakes.cpp
    ${CMAKE_CURRENT_LIST_DIR}/transport_cases.cpp)
target_sources(qarl_tests PRIVATE ${QARL_REFIT_TEST_HELPERS})

add_executable(refit_peer ${CMAKE_CURRENT_LIST_DIR}/refit_peer.cpp ${QARL_REFIT_TEST_HELPERS}
               ${CMAKE_CURRENT_LIST_DIR}/../test_util.cpp)
target_include_directories(refit_peer PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(refit_peer PRIVATE qarl_lib)
target_compile_definitions(refit_peer PRIVATE
  QARL_TEST_DATA_DIR="${CMAKE_CURRENT_LIST_DIR}/../data"
  QARL_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
  QARL_BINARY="$<TARGET_FILE:qarl>")
target_compile_definitions(qarl_tests PRIVATE QARL_REFIT_PEER="$<TARGET_FILE:refit_peer>")
add_dependencies(qarl_tests refit_peer)
