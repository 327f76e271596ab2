// SearchRuns: plans a filter over the run_index column family.
//
// 1. The filter (with the experiment and lifecycle restrictions ANDed in) is evaluated bottom-up
//    into candidate sets of run ids by range scans over the indexes. A leaf whose range holds more
//    than a limit is "incomplete" (its rows are checked later instead); AND intersects the complete
//    children, tightening the limit to the smallest set found so far, so a selective predicate
//    bounds the work of every other one. RocksDB's size estimate skips ranges that are clearly too
//    large without scanning them.
// 2. Ordering: a small complete set is loaded and sorted in memory; otherwise the order_by field's
//    index is walked in order and each entry is kept when it is in the set (or, for an incomplete
//    set, when the loaded run matches the filter) until the page is full.
// 3. Runs that lack the order field come last, by experiment then id, unless the filter already
//    requires the field.
// The page token holds the position of the last run examined, so paging resumes without re-reading.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "services/common/encoding.h"
#include "services/common/page_token.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/metadata/metadata_store.h"
#include "services/metadata/run_index_internal.h"

namespace mlops::metadata {
namespace {

using internal::AppendIndexValue;
using internal::BinaryToHexId;
using internal::kIdLength;
using internal::kIndexIdLength;

constexpr size_t kApproxIndexKeyBytes = 48;

// The low 64 bits (the random part) of a binary run id, as the key of candidate sets: compact and
// fast to hash. Sets only narrow the runs that are loaded; every loaded run is checked against the
// whole filter, so a (vanishingly rare) collision can cost a load but never a wrong result.
uint64_t IdKey(std::string_view binary_id) {
  return ReadBigEndian64(binary_id.substr(binary_id.size() - 8));
}

struct Candidates {
  bool complete = false;  // false: too many to collect; every run must be checked
  absl::flat_hash_map<uint64_t, std::array<char, kIndexIdLength>> ids;  // IdKey -> binary id
};

struct KeyRange {
  std::string lo, hi;        // [lo, hi); hi empty means unbounded
  bool check_value = false;  // decode each entry's value and test the leaf
};

bool IsIntegerAttribute(const Field& field) {
  return field.kind == FieldKind::kAttribute &&
         (field.attribute == Attribute::kStartTime || field.attribute == Attribute::kEndTime);
}

std::string EncodedValue(const Field& field, const Value& value) {
  FieldValue v;
  v.present = true;
  v.numeric = field.numeric();
  v.number = value.number;
  v.text = value.text;
  std::string out;
  AppendIndexValue(&out, field, v);
  return out;
}

std::string NanKey(const std::string& prefix) {
  std::string out = prefix;
  AppendOrderedDouble(&out, std::numeric_limits<double>::quiet_NaN());
  return out;
}

std::string IntKey(const std::string& prefix, int64_t value) {
  std::string out = prefix;
  AppendOrderedInt64(&out, value);
  return out;
}

// Clamps a double to int64.
int64_t ClampToInt64(double value) {
  if (value >= 9.2e18) return std::numeric_limits<int64_t>::max();
  if (value <= -9.2e18) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(value);
}

// The index ranges that hold the runs matching a comparison leaf.
std::vector<KeyRange> LeafRanges(const Expr& leaf) {
  const Field& field = leaf.field;
  const std::string prefix = internal::IndexPrefix(field);
  const std::string all_end = PrefixSuccessor(prefix);
  std::vector<KeyRange> ranges;
  auto exact = [&](const Value& value) {
    if (field.numeric() && std::isnan(value.number)) return;
    if (IsIntegerAttribute(field) && value.number != std::floor(value.number)) return;
    std::string start = prefix + EncodedValue(field, value);
    ranges.push_back({start, PrefixSuccessor(start)});
  };
  switch (leaf.op) {
    case CompareOp::kEq:
      exact(leaf.values[0]);
      return ranges;
    case CompareOp::kIn:
      for (const Value& value : leaf.values) exact(value);
      return ranges;
    case CompareOp::kLt:
    case CompareOp::kLe:
    case CompareOp::kGt:
    case CompareOp::kGe: {
      const Value& value = leaf.values[0];
      if (field.numeric() && std::isnan(value.number)) return ranges;
      if (IsIntegerAttribute(field)) {
        int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
        if (leaf.op == CompareOp::kGt) lo = ClampToInt64(std::floor(value.number)) + 1;
        if (leaf.op == CompareOp::kGe) lo = ClampToInt64(std::ceil(value.number));
        if (leaf.op == CompareOp::kLt) hi = ClampToInt64(std::ceil(value.number)) - 1;
        if (leaf.op == CompareOp::kLe) hi = ClampToInt64(std::floor(value.number));
        if (lo > hi) return ranges;
        ranges.push_back({IntKey(prefix, lo), PrefixSuccessor(IntKey(prefix, hi))});
        return ranges;
      }
      std::string at = prefix + EncodedValue(field, value);
      // Metric ranges stop below NaN, which sorts above +inf and compares false.
      std::string top = field.numeric() ? NanKey(prefix) : all_end;
      switch (leaf.op) {
        case CompareOp::kGt:
          ranges.push_back({PrefixSuccessor(at), top});
          break;
        case CompareOp::kGe:
          ranges.push_back({at, top});
          break;
        case CompareOp::kLt:
          ranges.push_back({prefix, at});
          break;
        default:
          ranges.push_back({prefix, PrefixSuccessor(at)});
          break;
      }
      return ranges;
    }
    case CompareOp::kLike: {
      // A literal prefix of the pattern narrows the scan.
      const std::string& pattern = leaf.values[0].text;
      std::string literal;
      for (char c : pattern) {
        if (c == '%' || c == '_' || c == '\\' || c == '\0') break;
        literal += c;
      }
      ranges.push_back({prefix + literal, PrefixSuccessor(prefix + literal), true});
      return ranges;
    }
    default:
      ranges.push_back({prefix, all_end, true});
      return ranges;
  }
}

int Rank(const Expr& expr) {
  if (expr.type != Expr::Type::kCompare) return 2;
  if (expr.field.attribute == Attribute::kExperimentId ||
      expr.field.attribute == Attribute::kLifecycle) {
    return 5;
  }
  switch (expr.op) {
    case CompareOp::kEq:
    case CompareOp::kIn:
      return 0;
    case CompareOp::kLt:
    case CompareOp::kLe:
    case CompareOp::kGt:
    case CompareOp::kGe:
    case CompareOp::kLike:
      return 1;
    default:
      return 3;
  }
}

// True when every run matching `expr` must have a value for `field` (a comparison on a missing
// key is false).
bool RequiresField(const Expr* expr, const Field& field) {
  if (expr == nullptr) return false;
  if (field.kind == FieldKind::kAttribute) return true;
  switch (expr->type) {
    case Expr::Type::kCompare:
      return expr->field.kind == field.kind && expr->field.key == field.key;
    case Expr::Type::kAnd:
      for (const auto& child : expr->children) {
        if (RequiresField(child.get(), field)) return true;
      }
      return false;
    case Expr::Type::kOr:
      for (const auto& child : expr->children) {
        if (!RequiresField(child.get(), field)) return false;
      }
      return true;
  }
  return false;
}

std::unique_ptr<Expr> InLeaf(Attribute attribute, const std::vector<std::string>& values) {
  auto leaf = std::make_unique<Expr>();
  leaf->type = Expr::Type::kCompare;
  leaf->field = internal::AttributeField(attribute);
  leaf->op = CompareOp::kIn;
  for (const auto& text : values) leaf->values.push_back(Value{false, 0, text});
  return leaf;
}

// A position in the result order: phase 0 runs have the order field (bytes = encoded value + id),
// phase 1 runs lack it (bytes = experiment id + run id, ascending).
struct Position {
  int phase = 0;
  std::string bytes;
};

class Searcher {
 public:
  Searcher(const Db& db, rocksdb::ColumnFamilyHandle* index, rocksdb::ColumnFamilyHandle* runs)
      : db_(db), index_(index), runs_(runs) {}

  absl::StatusOr<Candidates> Eval(const Expr& expr, size_t limit) {
    switch (expr.type) {
      case Expr::Type::kCompare:
        return EvalLeaf(expr, limit);
      case Expr::Type::kAnd:
        return EvalAnd(expr, limit);
      case Expr::Type::kOr:
        return EvalOr(expr, limit);
    }
    return Candidates{};
  }

  // Loads a run by its binary id (as it ends index keys); nullopt when it is gone.
  absl::StatusOr<std::optional<v1::Run>> LoadRun(std::string_view binary_id) {
    ++work_;
    std::string id = BinaryToHexId(binary_id);
    return db_.GetProto<v1::Run>(runs_, id);  // nullopt: deleted concurrently, skipped
  }

  size_t work() const { return work_; }
  void ResetWork() { work_ = 0; }
  void AddWork(size_t n) { work_ += n; }

  size_t Estimate(const KeyRange& range) const {
    const std::string hi = range.hi.empty() ? std::string(1, '\xff') : range.hi;
    if (range.lo >= hi) return 0;
    rocksdb::Range r(range.lo, hi);
    uint64_t bytes = 0;
    rocksdb::SizeApproximationOptions options;
    options.include_memtables = true;
    options.include_files = true;
    db_.raw()->GetApproximateSizes(options, index_, &r, 1, &bytes);
    return bytes / kApproxIndexKeyBytes;
  }

  // Estimated number of index entries a leaf's ranges hold.
  size_t EstimateLeaf(const Expr& leaf) const {
    size_t estimate = 0;
    for (const auto& range : LeafRanges(leaf)) estimate += Estimate(range);
    return estimate;
  }

 private:
  absl::StatusOr<Candidates> EvalLeaf(const Expr& leaf, size_t limit) {
    std::vector<KeyRange> ranges = LeafRanges(leaf);
    Candidates result;
    size_t estimate = 0;
    for (const auto& range : ranges) estimate += Estimate(range);
    if (estimate > 2 * limit + 100) return result;  // clearly too large: check per run instead
    result.ids.reserve(std::min(estimate, limit) + 16);
    const std::string prefix = internal::IndexPrefix(leaf.field);
    bool overflow = false;
    for (const auto& range : ranges) {
      if (!range.hi.empty() && range.lo >= range.hi) continue;
      rocksdb::ReadOptions options;
      rocksdb::Slice upper(range.hi);
      if (!range.hi.empty()) options.iterate_upper_bound = &upper;
      std::unique_ptr<rocksdb::Iterator> it(db_.raw()->NewIterator(options, index_));
      for (it->Seek(range.lo); it->Valid(); it->Next()) {
        ++work_;
        std::string_view key(it->key().data(), it->key().size());
        if (key.size() < prefix.size() + kIndexIdLength) continue;
        if (range.check_value) {
          FieldValue value;
          std::string_view encoded =
              key.substr(prefix.size(), key.size() - prefix.size() - kIndexIdLength);
          if (!internal::DecodeIndexValue(encoded, leaf.field, &value) ||
              !MatchesLeaf(leaf, value)) {
            continue;
          }
        }
        std::string_view id = key.substr(key.size() - kIndexIdLength);
        std::array<char, kIndexIdLength> bytes;
        std::memcpy(bytes.data(), id.data(), kIndexIdLength);
        result.ids.emplace(IdKey(id), bytes);
        if (result.ids.size() > limit) {
          overflow = true;
          break;
        }
      }
      RETURN_IF_ERROR(FromRocksStatus(it->status(), "search scan"));
      if (overflow) break;
    }
    if (overflow) return Candidates{};
    result.complete = true;
    return result;
  }

  absl::StatusOr<Candidates> EvalAnd(const Expr& expr, size_t limit) {
    std::vector<const Expr*> children;
    for (const auto& child : expr.children) children.push_back(child.get());
    std::stable_sort(children.begin(), children.end(),
                     [](const Expr* a, const Expr* b) { return Rank(*a) < Rank(*b); });
    std::vector<Candidates> complete;
    for (const Expr* child : children) {
      ASSIGN_OR_RETURN(Candidates c, Eval(*child, limit));
      if (!c.complete) continue;
      limit = std::min(limit, c.ids.size());
      complete.push_back(std::move(c));
      if (limit == 0) break;  // nothing can match
    }
    if (complete.empty()) return Candidates{};
    std::sort(complete.begin(), complete.end(),
              [](const Candidates& a, const Candidates& b) { return a.ids.size() < b.ids.size(); });
    Candidates result = std::move(complete[0]);
    for (size_t i = 1; i < complete.size(); ++i) {
      absl::erase_if(result.ids,
                     [&](const auto& entry) { return !complete[i].ids.contains(entry.first); });
    }
    result.complete = true;
    return result;
  }

  absl::StatusOr<Candidates> EvalOr(const Expr& expr, size_t limit) {
    Candidates result;
    for (const auto& child : expr.children) {
      ASSIGN_OR_RETURN(Candidates c, Eval(*child, limit));
      if (!c.complete) return Candidates{};
      result.ids.insert(c.ids.begin(), c.ids.end());
      if (result.ids.size() > limit) return Candidates{};
    }
    result.complete = true;
    return result;
  }

  const Db& db_;
  rocksdb::ColumnFamilyHandle* index_;
  rocksdb::ColumnFamilyHandle* runs_;
  size_t work_ = 0;
};

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& part : parts) out += part + ",";
  return out;
}

std::string EncodePosition(const Position& p) {
  return std::string(1, char('0' + p.phase)) + p.bytes;
}

}  // namespace

absl::StatusOr<v1::SearchRunsResponse> MetadataStore::SearchRuns(
    const v1::SearchRunsRequest& request) const {
  if (request.experiment_ids().empty()) {
    return absl::InvalidArgumentError("experiment_ids: name at least one experiment");
  }
  if (request.experiment_ids_size() > 1000) {
    return absl::InvalidArgumentError("experiment_ids: at most 1000");
  }
  std::vector<std::string> experiments(request.experiment_ids().begin(),
                                       request.experiment_ids().end());
  std::sort(experiments.begin(), experiments.end());
  experiments.erase(std::unique(experiments.begin(), experiments.end()), experiments.end());
  for (const auto& id : experiments) RETURN_IF_ERROR(LoadExperiment(id).status());
  if (request.filter().size() > StoreLimits::kMaxFilterLength) {
    return absl::InvalidArgumentError("filter: longer than 16 KiB");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Expr> filter, ParseFilter(request.filter()));
  if (request.order_by_size() > 1) {
    return absl::InvalidArgumentError("order_by: at most one field is supported");
  }
  OrderBy order;
  order.field = internal::AttributeField(Attribute::kStartTime);
  order.descending = true;
  if (request.order_by_size() == 1) {
    ASSIGN_OR_RETURN(order, ParseOrderBy(request.order_by(0)));
  }
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 100, 10000));
  v1::ViewType view =
      request.view() == v1::VIEW_TYPE_UNSPECIFIED ? v1::ACTIVE_ONLY : request.view();

  uint64_t fingerprint =
      Fingerprint({"runs", Join(experiments), request.filter(), order.field.ToString(),
                   order.descending ? "desc" : "asc", v1::ViewType_Name(view)});
  std::optional<Position> cursor;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(auto decoded,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    if (decoded.after.empty() || (decoded.after[0] != '0' && decoded.after[0] != '1')) {
      return absl::InvalidArgumentError("page_token: malformed token");
    }
    cursor = Position{decoded.after[0] - '0', decoded.after.substr(1)};
  }

  auto root = std::make_unique<Expr>();
  root->type = Expr::Type::kAnd;
  root->children.push_back(InLeaf(Attribute::kExperimentId, experiments));
  if (view != v1::ALL) {
    root->children.push_back(
        InLeaf(Attribute::kLifecycle, {view == v1::DELETED_ONLY ? "DELETED" : "ACTIVE"}));
  }
  if (filter) root->children.push_back(std::move(filter));

  Searcher searcher(*db_, index_, runs_);
  // A predicate matching more than a quarter of the runs searched is cheaper to check on the runs
  // met while walking the order than to collect.
  size_t universe = searcher.EstimateLeaf(*root->children[0]);
  size_t limit =
      std::min(tuning_.candidate_limit, std::max(tuning_.in_memory_sort_max, universe / 4));
  const std::string order_prefix = internal::IndexPrefix(order.field);
  const std::string resume_key =
      cursor && cursor->phase == 0 ? order_prefix + cursor->bytes : std::string();

  // The candidate sets are collected on a second thread while this one reads ahead in the order
  // index, which is what the walk reads first; on two cores that hides most of the collection.
  auto pending = std::async(std::launch::async, [&] {
    Searcher collector(*db_, index_, runs_);
    return collector.Eval(*root, limit);
  });
  std::string readahead;               // index keys read ahead, concatenated
  std::vector<size_t> readahead_ends;  // where each ends in `readahead`
  bool order_index_ended = false;
  absl::Status readahead_status;
  if (!cursor || cursor->phase == 0) {
    bool paused = false;
    auto fn = [&](std::string_view key, std::string_view) {
      readahead.append(key.data(), key.size());
      readahead_ends.push_back(readahead.size());
      if ((readahead_ends.size() & 63) == 0 &&
          (readahead_ends.size() >= tuning_.work_budget ||
           pending.wait_for(std::chrono::seconds(0)) == std::future_status::ready)) {
        paused = true;
        return false;
      }
      return true;
    };
    readahead_status = order.descending
                           ? db_->ScanPrefixReverse(index_, order_prefix, resume_key, fn)
                           : db_->ScanPrefix(index_, order_prefix, resume_key, fn);
    order_index_ended = !paused;
  }
  ASSIGN_OR_RETURN(Candidates candidates, pending.get());
  RETURN_IF_ERROR(readahead_status);
  const Expr* verify = root.get();
  const bool missing_phase = !RequiresField(root.get(), order.field);

  auto position_of = [&](const v1::Run& run) {
    FieldValue value = internal::GetFieldValue(run, order.field);
    Position p;
    if (value.present) {
      p.phase = 0;
      AppendIndexValue(&p.bytes, order.field, value);
      internal::AppendBinaryId(&p.bytes, run.id());
    } else {
      p.phase = 1;
      p.bytes = run.experiment_id();
      internal::AppendBinaryId(&p.bytes, run.id());
    }
    return p;
  };
  // True when a comes before b in the result order.
  auto before = [&](const Position& a, const Position& b) {
    if (a.phase != b.phase) return a.phase < b.phase;
    if (a.phase == 0 && order.descending) return a.bytes > b.bytes;
    return a.bytes < b.bytes;
  };

  v1::SearchRunsResponse response;
  std::optional<Position> last;  // last position examined (emitted or skipped)
  bool more = false;

  if (candidates.complete && candidates.ids.size() <= tuning_.in_memory_sort_max) {
    std::vector<std::pair<Position, v1::Run>> rows;
    rows.reserve(candidates.ids.size());
    for (const auto& [key, bytes] : candidates.ids) {
      ASSIGN_OR_RETURN(auto run, searcher.LoadRun(std::string_view(bytes.data(), bytes.size())));
      if (!run || (verify != nullptr && !internal::Matches(verify, *run))) continue;
      Position p = position_of(*run);
      if (cursor && !before(*cursor, p)) continue;
      rows.emplace_back(std::move(p), std::move(*run));
    }
    std::sort(rows.begin(), rows.end(),
              [&](const auto& a, const auto& b) { return before(a.first, b.first); });
    for (auto& [position, run] : rows) {
      if (response.runs_size() == page_size) {
        more = true;
        break;
      }
      *response.add_runs() = std::move(run);
      last = position;
    }
  } else {
    bool stop = false;
    // Handles one run id met during the walk; returns false to end the walk.
    // `bytes` is the position's bytes (copied into `last` without allocating once it has grown).
    auto remember = [&](int phase, std::string_view bytes) {
      if (!last) last.emplace();
      last->phase = phase;
      last->bytes.assign(bytes.data(), bytes.size());
    };
    auto visit = [&](std::string_view id, int phase, std::string_view bytes,
                     bool need_missing) -> absl::Status {
      if (searcher.work() >= tuning_.work_budget) {
        stop = true;
        more = true;
        return absl::OkStatus();
      }
      if (candidates.complete && !candidates.ids.contains(IdKey(id))) {
        searcher.AddWork(1);
        remember(phase, bytes);
        return absl::OkStatus();
      }
      if (response.runs_size() == page_size) {
        stop = true;
        more = true;
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(auto run, searcher.LoadRun(id));
      if (run && (!need_missing || !internal::GetFieldValue(*run, order.field).present) &&
          (verify == nullptr || internal::Matches(verify, *run))) {
        *response.add_runs() = std::move(*run);
      }
      remember(phase, bytes);
      return absl::OkStatus();
    };
    absl::Status status;
    if (!cursor || cursor->phase == 0) {
      auto fn = [&](std::string_view key, std::string_view) {
        if (key.size() < order_prefix.size() + kIndexIdLength) return true;
        status = visit(key.substr(key.size() - kIndexIdLength), 0, key.substr(order_prefix.size()),
                       false);
        return status.ok() && !stop;
      };
      // First the keys read ahead, then the rest of the order index after the last of them.
      size_t begin = 0;
      bool go_on = true;
      for (size_t end : readahead_ends) {
        go_on = fn(std::string_view(readahead).substr(begin, end - begin), {});
        begin = end;
        if (!go_on) break;
      }
      RETURN_IF_ERROR(status);
      if (go_on && !order_index_ended) {
        std::string resume = readahead_ends.empty()
                                 ? resume_key
                                 : readahead.substr(readahead_ends.size() > 1
                                                        ? readahead_ends[readahead_ends.size() - 2]
                                                        : 0);
        RETURN_IF_ERROR(order.descending ? db_->ScanPrefixReverse(index_, order_prefix, resume, fn)
                                         : db_->ScanPrefix(index_, order_prefix, resume, fn));
        RETURN_IF_ERROR(status);
      }
    }
    if (!stop && missing_phase) {
      const Field experiment_field = internal::AttributeField(Attribute::kExperimentId);
      for (const auto& experiment : experiments) {
        if (cursor && cursor->phase == 1 && experiment < cursor->bytes.substr(0, kIdLength)) {
          continue;
        }
        std::string prefix = internal::IndexPrefix(experiment_field);
        AppendOrderedString(&prefix, experiment);
        std::string resume;
        if (cursor && cursor->phase == 1 && experiment == cursor->bytes.substr(0, kIdLength)) {
          resume = prefix + cursor->bytes.substr(kIdLength);
        }
        std::string bytes = experiment;  // experiment id + run id
        RETURN_IF_ERROR(
            db_->ScanPrefix(index_, prefix, resume, [&](std::string_view key, std::string_view) {
              std::string_view id = key.substr(key.size() - kIndexIdLength);
              bytes.resize(kIdLength);
              bytes.append(id.data(), id.size());
              status = visit(id, 1, bytes, true);
              return status.ok() && !stop;
            }));
        RETURN_IF_ERROR(status);
        if (stop) break;
      }
    }
  }
  if (more && last)
    response.set_next_page_token(
        EncodePageToken(db_->page_token_key(), {fingerprint, EncodePosition(*last)}));
  return response;
}

}  // namespace mlops::metadata
