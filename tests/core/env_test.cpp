// core/env.h: the table of QARL_* variables, their checks, and qarl's refusal of bad values.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "qarl/core/env.h"
#include "qarl/core/error.h"
#include "test_util.h"

namespace qarl {
namespace {

// Sets (or unsets, value null) a variable for one scope and restores the old value.
struct ScopedEnv {
  std::string name;
  std::string old;
  bool had;
  ScopedEnv(const char* n, const char* v) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    if (v) ::setenv(n, v, 1);
    else ::unsetenv(n);
  }
  ~ScopedEnv() {
    if (had) ::setenv(name.c_str(), old.c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

// The error for NAME=value names the variable and the value.
void expect_refused(const char* name, const char* value) {
  ScopedEnv e(name, value);
  try {
    check_environment();
    ADD_FAILURE() << name << "='" << value << "' was accepted";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::Usage);
    const std::string what = err.what();
    EXPECT_NE(what.find(name), std::string::npos) << what;
    EXPECT_NE(what.find(value), std::string::npos) << what;
  }
}

TEST(Env, EveryListedVariableTakesItsValuesAndRefusesOthers) {
  for (const EnvVar& v : environment_variables()) {
    SCOPED_TRACE(v.name);
    ScopedEnv clear(v.name, nullptr);
    EXPECT_NO_THROW(check_environment());
    {
      ScopedEnv empty(v.name, "");  // set but empty: as unset
      EXPECT_NO_THROW(check_environment());
    }
    const std::string values = v.values;
    if (values[0] != '<') {
      size_t start = 0;
      while (start <= values.size()) {  // every listed word is taken
        const size_t bar = values.find('|', start);
        const std::string word = values.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
        ScopedEnv e(v.name, word.c_str());
        EXPECT_NO_THROW(check_environment()) << word;
        EXPECT_EQ(env_choice(v.name).value_or(""), word);
        if (bar == std::string::npos) break;
        start = bar + 1;
      }
      expect_refused(v.name, "bogus");
      expect_refused(v.name, " 1");
    } else {
      {
        ScopedEnv e(v.name, "12");
        EXPECT_EQ(env_number(v.name).value_or(-1), 12.0);
      }
      for (const char* bad : {"abc", "5s", "-1", "inf", "nan", "1e999"}) expect_refused(v.name, bad);
    }
  }
}

TEST(Env, NumbersAndIntegers) {
  {
    ScopedEnv e("QARL_NCCL_TIMEOUT_S", "12.5");
    EXPECT_EQ(env_number("QARL_NCCL_TIMEOUT_S").value(), 12.5);
  }
  expect_refused("QARL_NCCL_TIMEOUT_S", "0");  // a timeout must be positive
  {
    ScopedEnv e("QARL_CUDA_CACHE_MB", "0");  // no cache: allowed
    EXPECT_EQ(env_number("QARL_CUDA_CACHE_MB").value(), 0.0);
  }
  expect_refused("QARL_CUDA_CACHE_MB", "1.5");
  ScopedEnv unset("QARL_CUDA_CACHE_MB", nullptr);
  EXPECT_FALSE(env_number("QARL_CUDA_CACHE_MB").has_value());
}

TEST(Env, AskingForAnUnlistedVariableIsAnInternalError) {
  EXPECT_THROW(env_choice("QARL_NOT_A_VARIABLE"), Error);
  EXPECT_THROW(env_number("QARL_LOG"), Error);  // a word variable
}

TEST(Env, QarlRefusesABadValueBeforeRunningAndListsTheVariablesInHelp) {
  {
    ScopedEnv e("QARL_GEMM_ISA", "avx9");
    auto r = test::run_qarl("version");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("QARL_GEMM_ISA='avx9'"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("qarl "), std::string::npos) << "the command ran: " << r.out;
  }
  auto h = test::run_qarl("--help");
  EXPECT_EQ(h.exit_code, 0);
  for (const EnvVar& v : environment_variables()) EXPECT_NE(h.out.find(v.name), std::string::npos) << v.name;
}

}  // namespace
}  // namespace qarl
