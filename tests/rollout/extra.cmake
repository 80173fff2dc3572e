# rollout: shared fixtures (tiny checkpoints, K/V recipes, trainer-side scoring) for the
# rollout unit tests.
target_sources(qarl_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/rollout_fixtures.cpp)
