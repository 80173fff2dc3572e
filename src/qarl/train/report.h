// A self-contained report.html for a run directory: inline SVG line plots drawn here (no
// scripts, no network) of reward/accuracy, loss/grad-norm, the trainer/rollout mismatch
// metrics and throughput from metrics.jsonl, a bar chart of the calibrated K/V amax per
// layer, and a summary table. Opens in any browser offline.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace qarl::train {

struct AmaxRow {
  std::string layer;  // e.g. "model.layers.3.self_attn"
  double k_amax = 0, v_amax = 0;
};

struct ReportInfo {
  std::string title = "qarl run";
  std::vector<std::pair<std::string, std::string>> facts;  // recipe, model, quant, ...
  bool rollout_only_experiment = false;  // shown as a banner
};

// Reads RUN_DIR/metrics.jsonl and writes RUN_DIR/report.html atomically; returns its path.
std::string write_report(const std::string& run_dir, const std::vector<AmaxRow>& amax,
                         const ReportInfo& info);
// The HTML itself (for tests).
std::string render_report(const std::string& metrics_jsonl_path, const std::vector<AmaxRow>& amax,
                          const ReportInfo& info);

// A line chart as an <svg> element: one polyline per series over x = step.
struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (step, value); non-finite points skipped
};
std::string svg_line_chart(const std::string& title, const std::vector<Series>& series);
std::string svg_amax_bars(const std::vector<AmaxRow>& amax);
std::string html_escape(const std::string& s);

}  // namespace qarl::train
