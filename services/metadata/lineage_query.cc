// LineageStore: the lineage graph around a node (GetLineage).
#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "mlops/metadata/internal/lineage_storage.pb.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/names.h"
#include "services/common/page_token.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/metadata/filter.h"
#include "services/metadata/lineage_store.h"
#include "services/metadata/lineage_store_internal.h"
#include "services/metadata/registry_store.h"

namespace mlops::metadata {

using google::protobuf::Map;

// Lineage

absl::StatusOr<v1::LineageGraph> LineageStore::GetLineage(const v1::GetLineageRequest& request,
                                                          std::string_view project) const {
  int hops = request.max_hops() == 0 ? 3 : request.max_hops();
  if (hops < 0 || hops > kMaxLineageHops) {
    return absl::InvalidArgumentError(
        StrCat("max_hops ", std::to_string(request.max_hops()), ": 1 to 100"));
  }
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 1000, 10000));
  ASSIGN_OR_RETURN(auto stop, ParseFilter(request.stop_filter(), FilterDialect::kLineage));
  auto direction = request.direction() == v1::GetLineageRequest::DIRECTION_UNSPECIFIED
                       ? v1::GetLineageRequest::UPSTREAM
                       : request.direction();
  bool up = direction != v1::GetLineageRequest::DOWNSTREAM;
  bool down = direction != v1::GetLineageRequest::UPSTREAM;

  // Nodes are (kind, id) packed as kind * 2^62 + id: artifacts before executions at equal hop.
  auto pack = [](v1::NodeKind kind, int64_t id) {
    return (static_cast<uint64_t>(kind == v1::ARTIFACT ? 0 : 1) << 62) | static_cast<uint64_t>(id);
  };
  auto kind_of = [](uint64_t packed) { return (packed >> 62) == 0 ? v1::ARTIFACT : v1::EXECUTION; };
  auto id_of = [](uint64_t packed) {
    return static_cast<int64_t>(packed & ((uint64_t{1} << 62) - 1));
  };

  std::vector<uint64_t> frontier;
  std::string start_key;
  switch (request.start_case()) {
    case v1::GetLineageRequest::kArtifactId:
      // Edges join nodes of one project: from a start in it, the walk never leaves it.
      RETURN_IF_ERROR(
          MustLoadIn<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, request.artifact_id(), project)
              .status());
      frontier.push_back(pack(v1::ARTIFACT, request.artifact_id()));
      start_key = StrCat("a", Id8(request.artifact_id()));
      break;
    case v1::GetLineageRequest::kExecutionId:
      RETURN_IF_ERROR(
          MustLoadIn<v1::Execution>(*db_, nodes_, v1::EXECUTION, request.execution_id(), project)
              .status());
      frontier.push_back(pack(v1::EXECUTION, request.execution_id()));
      start_key = StrCat("e", Id8(request.execution_id()));
      break;
    case v1::GetLineageRequest::kRunId:
      RETURN_IF_ERROR(CheckInProject("run_id", request.run_id(), project));
      RETURN_IF_ERROR(db_->ScanPrefix(index_, RunIndexPrefix(request.run_id()), {},
                                      [&](std::string_view key, std::string_view) {
                                        frontier.push_back(pack(
                                            v1::EXECUTION, ReadId8(key.substr(key.size() - 8))));
                                        return true;
                                      }));
      if (frontier.empty()) {
        return absl::NotFoundError(
            StrCat("run ", request.run_id(), " has no executions in the lineage graph"));
      }
      start_key = StrCat("r", request.run_id());
      break;
    default:
      return absl::InvalidArgumentError("start: give artifact_id, execution_id or run_id");
  }
  uint64_t fingerprint = Fingerprint({"lineage", start_key, std::to_string(direction),
                                      std::to_string(hops), request.stop_filter()});
  size_t offset = 0;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    offset = static_cast<size_t>(std::strtoull(cursor.after.c_str(), nullptr, 10));
  }

  // Breadth first. `order` is the output order; `hop_of` the distance of each visited node.
  absl::flat_hash_map<uint64_t, int> hop_of;
  absl::flat_hash_map<uint64_t, bool> stopped;
  std::vector<uint64_t> order;
  std::vector<v1::Event> edges;
  std::sort(frontier.begin(), frontier.end());
  for (uint64_t n : frontier) hop_of[n] = 0;
  absl::Status status = absl::OkStatus();
  size_t examined = 0;  // edges
  auto over_budget = [&](std::string_view what, size_t limit) {
    return absl::InvalidArgumentError(StrCat("lineage: more than ", std::to_string(limit), " ",
                                             what, " within ", std::to_string(hops),
                                             " hops; use fewer hops or a stop_filter"));
  };
  for (int hop = 0; !frontier.empty(); ++hop) {
    std::sort(frontier.begin(), frontier.end());
    for (uint64_t n : frontier) order.push_back(n);
    if (order.size() > budget_.max_nodes) return over_budget("nodes", budget_.max_nodes);
    std::vector<uint64_t> next;
    for (uint64_t n : frontier) {
      // The start nodes are always expanded; others stop when they match the filter.
      if (hop > 0 && stop != nullptr) {
        NodeRef ref{kind_of(n)};
        std::optional<v1::Artifact> a;
        std::optional<v1::Execution> e;
        if (ref.kind == v1::ARTIFACT) {
          ASSIGN_OR_RETURN(a, LoadNode<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, id_of(n)));
          if (!a) continue;
          ref.artifact = &*a;
        } else {
          ASSIGN_OR_RETURN(e, LoadNode<v1::Execution>(*db_, nodes_, v1::EXECUTION, id_of(n)));
          if (!e) continue;
          ref.execution = &*e;
        }
        if (NodeMatches(stop.get(), ref)) {
          stopped[n] = true;
          continue;
        }
      }
      if (hop == hops) continue;
      auto follow = [&](const std::string& prefix, bool from_artifact) -> absl::Status {
        return db_->ScanProto<v1::Event>(
            edges_, prefix, {}, [&](std::string_view key, v1::Event& event) {
              if (++examined > budget_.max_edges) return false;
              int64_t other = ReadId8(key.substr(key.size() - 8));
              uint64_t neighbor = pack(from_artifact ? v1::EXECUTION : v1::ARTIFACT, other);
              if (hop_of.try_emplace(neighbor, hop + 1).second) next.push_back(neighbor);
              edges.push_back(std::move(event));
              return true;
            });
      };
      int64_t id = id_of(n);
      if (kind_of(n) == v1::ARTIFACT) {
        if (up) RETURN_IF_ERROR(follow(ArtifactEdgePrefix(id, v1::Event::OUTPUT), true));
        if (down) RETURN_IF_ERROR(follow(ArtifactEdgePrefix(id, v1::Event::INPUT), true));
        if (examined > budget_.max_edges) return over_budget("edges", budget_.max_edges);
      } else {
        ASSIGN_OR_RETURN(auto stored,
                         db_->GetProto<internal::ExecutionEvents>(edges_, ExecutionEventsKey(id)));
        if (!stored) continue;
        internal::ExecutionEvents& events = *stored;
        examined += static_cast<size_t>(events.events_size());
        if (examined > budget_.max_edges) return over_budget("edges", budget_.max_edges);
        for (v1::Event& event : *events.mutable_events()) {
          if (event.type() == v1::Event::INPUT ? !up : !down) continue;
          uint64_t neighbor = pack(v1::ARTIFACT, event.artifact_id());
          if (hop_of.try_emplace(neighbor, hop + 1).second) next.push_back(neighbor);
          edges.push_back(std::move(event));
        }
      }
    }
    frontier = std::move(next);
  }

  v1::LineageGraph graph;
  graph.set_total_nodes(static_cast<int64_t>(order.size()));
  size_t end = std::min(order.size(), offset + static_cast<size_t>(page_size));
  absl::flat_hash_map<uint64_t, size_t> position;
  for (size_t i = 0; i < order.size(); ++i) position[order[i]] = i;
  for (size_t i = offset; i < end; ++i) {
    uint64_t n = order[i];
    v1::LineageNode* node = graph.add_nodes();
    node->set_hop(hop_of[n]);
    node->set_stopped(stopped.contains(n));
    if (kind_of(n) == v1::ARTIFACT) {
      ASSIGN_OR_RETURN(*node->mutable_artifact(),
                       MustLoad<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, id_of(n)));
    } else {
      ASSIGN_OR_RETURN(*node->mutable_execution(),
                       MustLoad<v1::Execution>(*db_, nodes_, v1::EXECUTION, id_of(n)));
    }
  }
  // Each edge once, on the page of its later endpoint.
  absl::flat_hash_set<std::tuple<int64_t, int64_t, int>> seen_edges;
  for (v1::Event& event : edges) {
    auto a = position.find(pack(v1::ARTIFACT, event.artifact_id()));
    auto e = position.find(pack(v1::EXECUTION, event.execution_id()));
    if (a == position.end() || e == position.end()) continue;
    size_t later = std::max(a->second, e->second);
    if (later < offset || later >= end) continue;
    if (!seen_edges.insert({event.artifact_id(), event.execution_id(), event.type()}).second) {
      continue;
    }
    *graph.add_edges() = std::move(event);
  }
  if (end < order.size()) {
    graph.set_next_page_token(
        EncodePageToken(db_->page_token_key(), {fingerprint, std::to_string(end)}));
  }
  return graph;
}

}  // namespace mlops::metadata
