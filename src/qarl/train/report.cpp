#include "qarl/train/report.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "qarl/core/fs.h"
#include "qarl/train/metrics.h"

namespace qarl::train {

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

namespace {
const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
constexpr double kW = 520, kH = 260, kL = 64, kR = 12, kT = 28, kB = 36;

std::string tick(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e4 || a < 1e-3) return fmt::format("{:.2e}", v);
  return fmt::format("{:.4g}", v);
}
}  // namespace

std::string svg_line_chart(const std::string& title, const std::vector<Series>& series) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (auto [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y)) {
        x0 = std::min(x0, x); x1 = std::max(x1, x); y0 = std::min(y0, y); y1 = std::max(y1, y);
      }
  std::string o = fmt::format(
      "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" role=\"img\" aria-label=\"{2}\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"#fff\"/>\n"
      "<text x=\"{3}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{2}</text>\n",
      kW, kH, html_escape(title), kL);
  if (!std::isfinite(x0)) {
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#888\">no data</text>\n</svg>\n",
                     kL + 10, kH / 2);
    return o;
  }
  if (x1 == x0) { x0 -= 0.5; x1 += 0.5; }
  if (y1 == y0) { const double d = y0 == 0 ? 1 : std::abs(y0) * 0.05; y0 -= d; y1 += d; }
  const double pw = kW - kL - kR, ph = kH - kT - kB;
  auto px = [&](double x) { return kL + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return kT + (1 - (y - y0) / (y1 - y0)) * ph; };
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\n",
                   kL, kT, pw, ph);
  for (int i = 0; i <= 4; ++i) {
    const double yv = y0 + (y1 - y0) * i / 4.0, xv = x0 + (x1 - x0) * i / 4.0;
    o += fmt::format("<line x1=\"{0}\" y1=\"{1:.2f}\" x2=\"{2}\" y2=\"{1:.2f}\" stroke=\"#eee\"/>"
                     "<text x=\"{3}\" y=\"{4:.2f}\" font-size=\"10\" text-anchor=\"end\">{5}</text>\n",
                     kL, py(yv), kL + pw, kL - 4, py(yv) + 3, tick(yv));
    o += fmt::format("<text x=\"{:.2f}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>\n",
                     px(xv), kT + ph + 14, tick(xv));
  }
  o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">step</text>\n",
                   kL + pw / 2, kH - 6);
  for (size_t k = 0; k < series.size(); ++k) {
    const char* color = kColors[k % 6];
    std::string pts;
    for (auto [x, y] : series[k].points)
      if (std::isfinite(x) && std::isfinite(y)) pts += fmt::format("{:.2f},{:.2f} ", px(x), py(y));
    o += fmt::format("<polyline class=\"series\" data-name=\"{}\" fill=\"none\" stroke=\"{}\" "
                     "stroke-width=\"1.5\" points=\"{}\"/>\n", html_escape(series[k].name), color, pts);
    o += fmt::format("<rect x=\"{:.0f}\" y=\"{}\" width=\"10\" height=\"3\" fill=\"{}\"/>"
                     "<text x=\"{:.0f}\" y=\"{}\" font-size=\"11\">{}</text>\n",
                     kL + 170 + 120.0 * k, 12, color, kL + 184 + 120.0 * k, 17, html_escape(series[k].name));
  }
  o += "</svg>\n";
  return o;
}

std::string svg_amax_bars(const std::vector<AmaxRow>& amax) {
  if (amax.empty()) return svg_line_chart("K/V amax per layer (no calibrated amax)", {});
  double mx = 0;
  for (const auto& r : amax) mx = std::max({mx, r.k_amax, r.v_amax});
  if (!(mx > 0)) mx = 1;
  const double bar = 9, gap = 6, lw = 220, pw = 360;
  const double h = kT + amax.size() * (2 * bar + gap) + 20;
  std::string o = fmt::format(
      "<svg class=\"chart amax\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1:.0f}\" "
      "viewBox=\"0 0 {0} {1:.0f}\" role=\"img\" aria-label=\"K/V amax per layer\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1:.0f}\" fill=\"#fff\"/>\n"
      "<text x=\"8\" y=\"18\" font-size=\"14\" font-weight=\"bold\">K/V amax per layer (calibrated, fixed)</text>\n"
      "<rect x=\"{2}\" y=\"8\" width=\"10\" height=\"8\" fill=\"{3}\"/><text x=\"{4}\" y=\"16\" font-size=\"11\">k</text>"
      "<rect x=\"{5}\" y=\"8\" width=\"10\" height=\"8\" fill=\"{6}\"/><text x=\"{7}\" y=\"16\" font-size=\"11\">v</text>\n",
      lw + pw + 80, h, lw + pw - 60, kColors[0], lw + pw - 46, lw + pw - 30, kColors[3], lw + pw - 16);
  double y = kT;
  for (const auto& r : amax) {
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"10\" text-anchor=\"end\">{}</text>\n",
                     lw - 6, y + bar + 3, html_escape(r.layer));
    for (auto [v, c] : {std::pair{r.k_amax, kColors[0]}, std::pair{r.v_amax, kColors[3]}}) {
      o += fmt::format("<rect class=\"bar\" x=\"{}\" y=\"{:.1f}\" width=\"{:.2f}\" height=\"{}\" fill=\"{}\"/>"
                       "<text x=\"{:.2f}\" y=\"{:.1f}\" font-size=\"9\">{}</text>\n",
                       lw, y, std::max(0.0, v / mx * pw), bar, c, lw + std::max(0.0, v / mx * pw) + 3,
                       y + bar - 1, tick(v));
      y += bar;
    }
    y += gap;
  }
  o += "</svg>\n";
  return o;
}

std::string render_report(const std::string& metrics_path, const std::vector<AmaxRow>& amax,
                          const ReportInfo& info) {
  const auto lines = read_metrics_lines(metrics_path);
  auto series = [&](const char* key, const char* label) {
    Series s{label, {}};
    for (const auto& j : lines)
      if (j.contains("step") && j.contains(key) && j[key].is_number())
        s.points.emplace_back(j["step"].get<double>(), j[key].get<double>());
    return s;
  };
  bool rollout_only = info.rollout_only_experiment;
  for (const auto& j : lines)
    if (j.contains("rollout_only_experiment") && j["rollout_only_experiment"] == true) rollout_only = true;

  std::string o =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
      html_escape(info.title) +
      "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}"
      ".grid{display:flex;flex-wrap:wrap;gap:16px}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}"
      ".banner{background:#fff3cd;border:1px solid #e0b000;padding:8px;margin:8px 0}</style>\n"
      "</head>\n<body>\n<h1>" + html_escape(info.title) + "</h1>\n";
  if (rollout_only)
    o += "<p class=\"banner\" id=\"rollout-only\"><b>Rollout-only experiment:</b> the rollout quantizes "
         "the K/V cache but the trainer does not (quantization-unaware baseline); the same-recipe rule "
         "was explicitly waived.</p>\n";
  o += "<table class=\"facts\">\n";
  for (const auto& [k, v] : info.facts)
    o += "<tr><th>" + html_escape(k) + "</th><td>" + html_escape(v) + "</td></tr>\n";
  o += fmt::format("<tr><th>steps logged</th><td>{}</td></tr>\n", lines.size());
  if (!lines.empty()) {
    const auto& first = lines.front();
    const auto& last = lines.back();
    for (const char* k : {"reward_mean", "accuracy", "token_mult_prob_error", "gen_kl_error"})
      if (first.contains(k) && last.contains(k))
        o += fmt::format("<tr><th>{} (first &rarr; last)</th><td>{} &rarr; {}</td></tr>\n", k,
                         tick(first[k].get<double>()), tick(last[k].get<double>()));
  }
  o += "</table>\n<h2>Training</h2>\n<div class=\"grid\">\n";
  o += svg_line_chart("Reward and accuracy", {series("reward_mean", "reward_mean"), series("accuracy", "accuracy")});
  o += svg_line_chart("Loss", {series("loss", "loss")});
  o += svg_line_chart("Gradient norm", {series("grad_norm", "grad_norm")});
  o += "</div>\n<h2>Trainer/rollout mismatch</h2>\n<div class=\"grid\">\n";
  o += svg_line_chart("token_mult_prob_error", {series("token_mult_prob_error", "token_mult_prob_error")});
  o += svg_line_chart("KL and JS errors", {series("gen_kl_error", "gen_kl_error"),
                                          series("policy_kl_error", "policy_kl_error"),
                                          series("js_divergence_error", "js_divergence_error")});
  o += "</div>\n<h2>Throughput</h2>\n<div class=\"grid\">\n";
  o += svg_line_chart("Tokens per second", {series("generation_tokens_per_s", "generation"),
                                           series("train_tokens_per_s", "train")});
  o += svg_line_chart("Refit seconds", {series("refit_seconds", "refit_seconds")});
  o += "</div>\n<h2>K/V calibration</h2>\n";
  o += svg_amax_bars(amax);
  o += "</body>\n</html>\n";
  return o;
}

std::string write_report(const std::string& run_dir, const std::vector<AmaxRow>& amax,
                         const ReportInfo& info) {
  const std::string path = run_dir + "/report.html";
  write_file_atomic(path, render_report(run_dir + "/metrics.jsonl", amax, info));
  return path;
}

}  // namespace qarl::train
