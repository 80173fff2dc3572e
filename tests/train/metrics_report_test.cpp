#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "qarl/core/fs.h"
#include "qarl/train/metrics.h"
#include "qarl/train/report.h"
#include "test_util.h"

using namespace qarl;
using namespace qarl::train;

namespace {
StepMetrics sample(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.reward_mean = 0.1 * double(step);
  m.accuracy = 0.05 * double(step);
  m.loss = -0.01 * double(step);
  m.grad_norm = 1.0 / double(step);
  m.token_mult_prob_error = 1.0 + 0.001 * double(step);
  m.gen_kl_error = 1e-4 * double(step);
  m.kv_quant = "nvfp4";
  m.gemm_mode = "fp32";
  m.extra["clip_fraction"] = 0.25;
  return m;
}
size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}
}  // namespace

TEST(Metrics, AppendsOneJsonLinePerStepWithRequiredKeys) {
  test::TempDir dir;
  MetricsWriter w(dir.file("run"));
  for (int s = 1; s <= 3; ++s) w.append(sample(s));
  const std::string text = read_file(w.path());
  EXPECT_EQ(count(text, "\n"), 3u);
  auto lines = read_metrics_lines(w.path());
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& key : required_metric_keys()) EXPECT_TRUE(lines[2].contains(key)) << key;
  EXPECT_EQ(lines[2]["step"], 3);
  EXPECT_EQ(lines[2]["kv_quant"], "nvfp4");
  EXPECT_EQ(lines[2]["clip_fraction"], 0.25);
  auto back = StepMetrics::from_json(lines[1]);
  EXPECT_EQ(back.step, 2);
  EXPECT_DOUBLE_EQ(back.reward_mean, 0.2);
  EXPECT_DOUBLE_EQ(back.extra.at("clip_fraction"), 0.25);
}

TEST(Metrics, TornLineSkippedAndTruncateOnResume) {
  test::TempDir dir;
  MetricsWriter w(dir.path());
  for (int s = 1; s <= 4; ++s) w.append(sample(s));
  {
    std::ofstream f(w.path(), std::ios::app);
    f << "{\"step\": 5, \"reward_me";  // a crash in the middle of a write
  }
  EXPECT_EQ(read_metrics_lines(w.path()).size(), 4u);
  w.truncate_after(2);
  auto lines = read_metrics_lines(w.path());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["step"], 2);
  EXPECT_EQ(lines[1].begin().key(), "step");  // key order kept
  w.append(sample(3));
  EXPECT_EQ(read_metrics_lines(w.path()).size(), 3u);
}

TEST(Metrics, ProgressLine) {
  StepMetrics m = sample(7);
  const std::string s = progress_line(m, 100);
  EXPECT_NE(s.find("step 7/100"), std::string::npos) << s;
  EXPECT_NE(s.find("reward 0.700"), std::string::npos) << s;
  EXPECT_EQ(s.find('\n'), std::string::npos);
  EXPECT_EQ(s.find("ROLLOUT-ONLY"), std::string::npos);
  m.rollout_only_experiment = true;
  EXPECT_NE(progress_line(m, 100).find("ROLLOUT-ONLY"), std::string::npos);
}

TEST(Report, SelfContainedHtmlWithPlots) {
  test::TempDir dir;
  MetricsWriter w(dir.path());
  for (int s = 1; s <= 5; ++s) w.append(sample(s));
  std::vector<AmaxRow> amax = {{"model.layers.0.self_attn", 3.5, 1.25}, {"model.layers.1.self_attn", 7.0, 2.0}};
  ReportInfo info;
  info.title = "grpo <tiny> & nvfp4";
  info.facts = {{"recipe", "recipes/grpo-tiny-nvfp4-kv.yaml"}};
  const std::string path = write_report(dir.path(), amax, info);
  const std::string html = read_file(path);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  EXPECT_NE(html.find("grpo &lt;tiny&gt; &amp; nvfp4"), std::string::npos);
  // No network and no scripts: the only URL is the SVG namespace.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
  EXPECT_EQ(count(html, "<svg"), 8u);  // 7 line charts + amax bars
  for (const char* key : {"reward_mean", "accuracy", "token_mult_prob_error", "gen_kl_error",
                          "policy_kl_error", "js_divergence_error"})
    EXPECT_NE(html.find(std::string("data-name=\"") + key + "\""), std::string::npos) << key;
  // Every polyline of a 5-step series has 5 points.
  std::regex poly("data-name=\"reward_mean\"[^>]*points=\"([^\"]*)\"");
  std::smatch mt;
  ASSERT_TRUE(std::regex_search(html, mt, poly));
  EXPECT_EQ(count(mt[1].str(), ","), 5u);
  EXPECT_EQ(count(html, "class=\"bar\""), 4u);  // k and v for 2 layers
  EXPECT_NE(html.find("model.layers.1.self_attn"), std::string::npos);
  EXPECT_EQ(html.find("id=\"rollout-only\""), std::string::npos);
  // Balanced element nesting for the container tags we emit.
  for (const char* tag : {"table", "div", "h2", "body", "head"})
    EXPECT_EQ(count(html, std::string("<") + tag), count(html, std::string("</") + tag + ">")) << tag;

  StepMetrics ro = sample(6);
  ro.rollout_only_experiment = true;
  w.append(ro);
  EXPECT_NE(render_report(w.path(), amax, info).find("id=\"rollout-only\""), std::string::npos);
}

TEST(Report, EmptyRunStillRenders) {
  test::TempDir dir;
  const std::string html = render_report(dir.file("metrics.jsonl"), {}, ReportInfo{});
  EXPECT_NE(html.find("no data"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
}
