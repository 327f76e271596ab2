#include "services/scheduler/yaml_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <map>
#include <sstream>
#include <unordered_map>

#include "services/common/strings.h"

namespace mlops::scheduler {
namespace {
const std::string kEmpty;
}  // namespace

// Turns parser events into YamlDocument nodes. A collection's children are gathered on a stack
// and appended to the document's child list in one piece when it ends, so that each node's
// children are contiguous.
class YamlBuilder final : public YAML::EventHandler {
 public:
  explicit YamlBuilder(YamlDocument* doc) : doc_(doc) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Add(New(YamlDocument::kNull, mark, anchor));
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) throw YAML::ParserException(mark, "unknown alias");
    Add(it->second);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    uint32_t index = New(YamlDocument::kScalar, mark, anchor);
    // yaml-cpp tags a plain scalar "?" and a quoted one "!" (explicit tags such as !!str count as
    // not plain: their text is meant as written).
    doc_->nodes_[index].plain = tag == "?" || tag.empty();
    doc_->nodes_[index].first = static_cast<uint32_t>(doc_->scalars_.size());
    doc_->scalars_.push_back(value);
    Add(index);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open_.push_back({New(YamlDocument::kSequence, mark, anchor), {}});
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open_.push_back({New(YamlDocument::kMap, mark, anchor), {}});
  }
  void OnMapEnd() override { Close(); }

 private:
  uint32_t New(YamlDocument::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
    uint32_t index = static_cast<uint32_t>(doc_->nodes_.size());
    doc_->nodes_.push_back({kind, false, mark.line, mark.column, 0, 0});
    if (anchor != YAML::NullAnchor) anchors_[anchor] = index;
    return index;
  }
  void Add(uint32_t index) {
    if (open_.empty()) {
      doc_->root_ = index;
    } else {
      open_.back().children.push_back(index);
    }
  }
  void Close() {
    Open done = std::move(open_.back());
    open_.pop_back();
    if (doc_->nodes_[done.index].kind == YamlDocument::kMap) {
      // YAML says keys are unique; yaml-cpp keeps the first silently. A spec says it once.
      std::unordered_map<std::string_view, uint32_t> seen;
      for (size_t i = 0; i + 1 < done.children.size(); i += 2) {
        const YamlDocument::Node& key = doc_->nodes_[done.children[i]];
        if (key.kind != YamlDocument::kScalar) continue;
        std::string_view text = doc_->scalars_[key.first];
        auto [it, fresh] = seen.emplace(text, done.children[i]);
        if (!fresh) {
          YAML::Mark mark;
          mark.line = key.line;
          mark.column = key.column;
          throw YAML::ParserException(
              mark, StrCat("duplicate key '", text, "' (first at line ",
                           std::to_string(doc_->nodes_[it->second].line + 1), ")"));
        }
      }
    }
    YamlDocument::Node& node = doc_->nodes_[done.index];
    node.first = static_cast<uint32_t>(doc_->children_.size());
    node.count = static_cast<uint32_t>(done.children.size());
    doc_->children_.insert(doc_->children_.end(), done.children.begin(), done.children.end());
    Add(done.index);
  }

  struct Open {
    uint32_t index;
    std::vector<uint32_t> children;
  };
  YamlDocument* doc_;
  std::vector<Open> open_;
  std::map<YAML::anchor_t, uint32_t> anchors_;
};

absl::StatusOr<std::unique_ptr<YamlDocument>> YamlDocument::Parse(std::string_view text) {
  auto doc = std::make_unique<YamlDocument>();
  doc->nodes_.push_back({kNull, 0, 0, 0, 0});  // the root of an empty text
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    YamlBuilder builder(doc.get());
    parser.HandleNextDocument(builder);
    // One document: a second one would be ignored, so it is an error.
    YamlDocument rest;
    rest.nodes_.push_back({kNull, 0, 0, 0, 0});
    YamlBuilder rest_builder(&rest);
    if (parser.HandleNextDocument(rest_builder)) {
      YAML::Mark mark;
      mark.line = rest.nodes_[rest.root_].line;
      mark.column = rest.nodes_[rest.root_].column;
      throw YAML::ParserException(
          mark, "a second YAML document ('---'): a pipeline spec is one document");
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("line ", std::to_string(e.mark.line + 1), ", column ",
                                             std::to_string(e.mark.column + 1),
                                             ": not valid YAML: ", e.msg));
  }
  return doc;
}

bool YamlNode::IsMap() const { return doc_ && doc_->nodes_[index_].kind == YamlDocument::kMap; }
bool YamlNode::IsSequence() const {
  return doc_ && doc_->nodes_[index_].kind == YamlDocument::kSequence;
}
bool YamlNode::IsScalar() const {
  return doc_ && doc_->nodes_[index_].kind == YamlDocument::kScalar;
}
bool YamlNode::IsNull() const { return doc_ && doc_->nodes_[index_].kind == YamlDocument::kNull; }

bool YamlNode::IsPlainScalar() const { return IsScalar() && doc_->nodes_[index_].plain; }

const std::string& YamlNode::Scalar() const {
  return IsScalar() ? doc_->scalars_[doc_->nodes_[index_].first] : kEmpty;
}

YamlMark YamlNode::Mark() const {
  if (!doc_) return {};
  return {doc_->nodes_[index_].line, doc_->nodes_[index_].column};
}

size_t YamlNode::size() const {
  if (!IsMap() && !IsSequence()) return 0;
  size_t count = doc_->nodes_[index_].count;
  return IsMap() ? count / 2 : count;
}

YamlNode YamlNode::Child(size_t i) const {
  return YamlNode(doc_, doc_->children_[doc_->nodes_[index_].first + i]);
}

YamlNode YamlNode::operator[](std::string_view key) const {
  for (size_t i = 0; i < size() && IsMap(); ++i) {
    YamlNode k = Child(2 * i);
    if (k.IsScalar() && k.Scalar() == key) return Child(2 * i + 1);
  }
  return YamlNode();
}

YamlNode YamlNode::operator[](size_t i) const {
  return IsSequence() && i < size() ? Child(i) : YamlNode();
}

YamlNode YamlNode::key(size_t i) const { return IsMap() && i < size() ? Child(2 * i) : YamlNode(); }

YamlNode YamlNode::value(size_t i) const {
  return IsMap() && i < size() ? Child(2 * i + 1) : YamlNode();
}

}  // namespace mlops::scheduler
