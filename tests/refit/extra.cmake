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

# MPI: a separate small library (qarl does not depend on MPI) and an mpirun test.
find_package(MPI COMPONENTS CXX QUIET)
if(MPI_CXX_FOUND AND MPIEXEC_EXECUTABLE)
  add_library(qarl_refit_mpi STATIC ${CMAKE_SOURCE_DIR}/src/qarl/refit/mpi_wire.cpp)
  target_compile_definitions(qarl_refit_mpi PUBLIC QARL_REFIT_WITH_MPI=1)
  target_link_libraries(qarl_refit_mpi PUBLIC qarl_lib MPI::MPI_CXX)
  add_executable(refit_mpi_peer ${CMAKE_CURRENT_LIST_DIR}/refit_mpi_peer.cpp ${QARL_REFIT_TEST_HELPERS}
                 ${CMAKE_CURRENT_LIST_DIR}/../test_util.cpp)
  target_include_directories(refit_mpi_peer PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
  target_link_libraries(refit_mpi_peer PRIVATE qarl_refit_mpi)
  target_compile_definitions(refit_mpi_peer PRIVATE
    QARL_TEST_DATA_DIR="${CMAKE_CURRENT_LIST_DIR}/../data"
    QARL_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    QARL_BINARY="$<TARGET_FILE:qarl>")
  add_dependencies(qarl_tests refit_mpi_peer)
  foreach(np 2 3)
    add_test(NAME refit.mpi_packed_broadcast_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -np ${np}
                     $<TARGET_FILE:refit_mpi_peer>)
    set_tests_properties(refit.mpi_packed_broadcast_np${np} PROPERTIES TIMEOUT 120
                         ENVIRONMENT "OMPI_MCA_btl_vader_single_copy_mechanism=none;OMPI_MCA_rmaps_base_oversubscribe=1")
  endforeach()
else()
  message(STATUS "qarl: MPI not found, the MPI refit wire and its test are skipped")
endif()
