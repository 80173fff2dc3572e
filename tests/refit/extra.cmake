# refit: shared fakes for the unit tests, the two-process transport peer, and the MPI wire.
target_sources(qarl_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/refit_fakes.cpp)
