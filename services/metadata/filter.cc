#include "services/metadata/filter.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::metadata {
namespace {

struct Token {
  enum class Kind { kEnd, kWord, kString, kNumber, kBacktick, kOp, kLParen, kRParen, kComma };
  Kind kind = Kind::kEnd;
  std::string text;  // words as written, strings unescaped, operators
  double number = 0;
  size_t pos = 0;  // 0-based position in the input, in characters once tokenized
};

bool IsKeyChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' ||
         c == ':' || c == '-';
}

class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  // Tokens with their positions counted in characters (UTF-8 code points), as errors report them.
  absl::StatusOr<std::vector<Token>> Tokenize() {
    ASSIGN_OR_RETURN(std::vector<Token> tokens, TokenizeBytes());
    size_t byte = 0, chars = 0;
    for (Token& token : tokens) {  // in input order
      for (; byte < token.pos && byte < text_.size(); ++byte) chars += IsLeadByte(text_[byte]);
      token.pos = chars;
    }
    return tokens;
  }

  // Errors name the 1-based character position.
  static absl::Status Error(size_t pos, std::string_view message) {
    return absl::InvalidArgumentError(StrCat("filter: at position ", pos + 1, ": ", message));
  }

 private:
  static bool IsLeadByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }

  absl::Status ErrorAtByte(size_t byte, std::string_view message) const {
    size_t chars = 0;
    for (size_t i = 0; i < byte && i < text_.size(); ++i) chars += IsLeadByte(text_[i]);
    return Error(chars, message);
  }

  absl::StatusOr<std::vector<Token>> TokenizeBytes() {
    std::vector<Token> tokens;
    while (true) {
      while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
      Token token;
      token.pos = pos_;
      if (pos_ >= text_.size()) {
        tokens.push_back(token);
        return tokens;
      }
      char c = text_[pos_];
      if (c == '(' || c == ')' || c == ',') {
        token.kind = c == '(' ? Token::Kind::kLParen
                              : (c == ')' ? Token::Kind::kRParen : Token::Kind::kComma);
        token.text = std::string(1, c);
        ++pos_;
      } else if (c == '\'' || c == '"' || c == '`') {
        token.kind = c == '`' ? Token::Kind::kBacktick : Token::Kind::kString;
        ++pos_;
        bool closed = false;
        while (pos_ < text_.size()) {
          char d = text_[pos_++];
          if (d == '\\' && pos_ < text_.size()) {
            token.text += text_[pos_++];
          } else if (d == c) {
            closed = true;
            break;
          } else {
            token.text += d;
          }
        }
        if (!closed)
          return ErrorAtByte(token.pos, StrCat("unterminated quote ", std::string(1, c)));
      } else if (c == '=' || c == '!' || c == '<' || c == '>') {
        token.kind = Token::Kind::kOp;
        if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '=') {
          token.text = std::string(text_.substr(pos_, 2));
          pos_ += 2;
        } else if (c == '!') {
          return ErrorAtByte(pos_, "expected != ");
        } else {
          token.text = std::string(1, c);
          ++pos_;
        }
        if (token.text == "==") token.text = "=";
      } else if (std::isdigit(static_cast<unsigned char>(c)) ||
                 ((c == '-' || c == '+' || c == '.') && pos_ + 1 < text_.size() &&
                  (std::isdigit(static_cast<unsigned char>(text_[pos_ + 1])) ||
                   text_[pos_ + 1] == '.'))) {
        const char* begin = text_.data() + pos_;
        std::string copy(text_.substr(pos_, 64));
        char* end = nullptr;
        token.number = std::strtod(copy.c_str(), &end);
        size_t used = static_cast<size_t>(end - copy.c_str());
        if (used == 0 || (pos_ + used < text_.size() && IsKeyChar(begin[used]) &&
                          begin[used] != '-' && begin[used] != '.')) {
          return ErrorAtByte(pos_, "malformed number");
        }
        token.kind = Token::Kind::kNumber;
        token.text = std::string(text_.substr(pos_, used));
        pos_ += used;
      } else if (IsKeyChar(c)) {
        token.kind = Token::Kind::kWord;
        while (pos_ < text_.size() && IsKeyChar(text_[pos_])) token.text += text_[pos_++];
        // A word may continue with a quoted key: metrics.`my key` or tags."a b".
        if (!token.text.empty() && token.text.back() == '.' && pos_ < text_.size() &&
            (text_[pos_] == '`' || text_[pos_] == '"')) {
          char quote = text_[pos_++];
          bool closed = false;
          std::string key;
          while (pos_ < text_.size()) {
            char d = text_[pos_++];
            if (d == quote) {
              closed = true;
              break;
            }
            key += d;
          }
          if (!closed) return ErrorAtByte(token.pos, "unterminated quoted key");
          token.text += '\x01' + key;  // marks a quoted key part
        }
      } else {
        return ErrorAtByte(pos_, StrCat("unexpected character '", std::string(1, c), "'"));
      }
      tokens.push_back(std::move(token));
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

bool IsKeyword(const Token& token, std::string_view word) {
  return token.kind == Token::Kind::kWord && EqualsIgnoreCase(token.text, word);
}

std::string Describe(const Token& token) {
  switch (token.kind) {
    case Token::Kind::kEnd:
      return "end of filter";
    case Token::Kind::kString:
      return StrCat("'", token.text, "'");
    default:
      return StrCat("'", token.text, "'");
  }
}

Attribute LineageAttributeByName(std::string_view name) {
  std::string lower = ToLower(name);
  if (lower == "type") return Attribute::kType;
  if (lower == "name") return Attribute::kName;
  if (lower == "uri") return Attribute::kUri;
  if (lower == "digest") return Attribute::kDigest;
  if (lower == "state") return Attribute::kState;
  if (lower == "run_id") return Attribute::kRunId;
  if (lower == "id") return Attribute::kNodeId;
  if (lower == "create_time") return Attribute::kCreateTime;
  if (lower == "kind") return Attribute::kKind;
  return Attribute::kNone;
}

Attribute AttributeByName(std::string_view name) {
  std::string lower = ToLower(name);
  if (lower == "status") return Attribute::kStatus;
  if (lower == "start_time") return Attribute::kStartTime;
  if (lower == "end_time") return Attribute::kEndTime;
  if (lower == "name" || lower == "run_name") return Attribute::kName;
  if (lower == "run_id" || lower == "id") return Attribute::kRunId;
  if (lower == "experiment_id") return Attribute::kExperimentId;
  return Attribute::kNone;
}

const char* AttributeName(Attribute attribute) {
  switch (attribute) {
    case Attribute::kStatus:
      return "status";
    case Attribute::kStartTime:
      return "start_time";
    case Attribute::kEndTime:
      return "end_time";
    case Attribute::kName:
      return "name";
    case Attribute::kRunId:
      return "run_id";
    case Attribute::kExperimentId:
      return "experiment_id";
    case Attribute::kLifecycle:
      return "lifecycle";
    case Attribute::kType:
      return "type";
    case Attribute::kUri:
      return "uri";
    case Attribute::kDigest:
      return "digest";
    case Attribute::kState:
      return "state";
    case Attribute::kNodeId:
      return "id";
    case Attribute::kCreateTime:
      return "create_time";
    case Attribute::kKind:
      return "kind";
    case Attribute::kNone:
      break;
  }
  return "";
}

// A field of the lineage dialect ("properties.rows", "type").
absl::StatusOr<Field> LineageFieldFromWord(const Token& token) {
  std::string text = token.text;
  size_t dot = text.find('.');
  Field field;
  if (dot != std::string::npos) {
    std::string prefix = ToLower(text.substr(0, dot));
    std::string key = text.substr(dot + 1);
    if (!key.empty() && key[0] == '\x01') key = key.substr(1);
    if (prefix == "properties" || prefix == "property") {
      field.kind = FieldKind::kProperty;
    } else if (prefix == "custom_properties" || prefix == "custom_property") {
      field.kind = FieldKind::kCustomProperty;
    } else {
      return Lexer::Error(token.pos, StrCat("unknown field prefix '", prefix,
                                            "' (use properties., custom_properties. or an "
                                            "attribute)"));
    }
    if (key.empty()) return Lexer::Error(token.pos, "missing key after '" + prefix + ".'");
    field.key = key;
    return field;
  }
  field.kind = FieldKind::kAttribute;
  field.attribute = LineageAttributeByName(text);
  if (field.attribute == Attribute::kNone) {
    return Lexer::Error(token.pos, StrCat("unknown attribute '", text,
                                          "' (type, name, uri, digest, state, run_id, id, "
                                          "create_time, kind; or properties.<key>)"));
  }
  field.key = AttributeName(field.attribute);
  return field;
}

// Parses a field from a word token ("metrics.acc", "status", "tags.\x01a b").
absl::StatusOr<Field> FieldFromWord(const Token& token, FilterDialect dialect) {
  if (dialect == FilterDialect::kLineage) return LineageFieldFromWord(token);
  std::string text = token.text;
  size_t dot = text.find('.');
  Field field;
  if (dot != std::string::npos) {
    std::string prefix = ToLower(text.substr(0, dot));
    std::string key = text.substr(dot + 1);
    if (!key.empty() && key[0] == '\x01') key = key.substr(1);
    if (prefix == "metrics" || prefix == "metric") {
      field.kind = FieldKind::kMetric;
    } else if (prefix == "params" || prefix == "param") {
      field.kind = FieldKind::kParam;
    } else if (prefix == "tags" || prefix == "tag") {
      field.kind = FieldKind::kTag;
    } else if (prefix == "attributes" || prefix == "attribute" || prefix == "attr" ||
               prefix == "run") {
      field.kind = FieldKind::kAttribute;
    } else {
      return Lexer::Error(token.pos, StrCat("unknown field prefix '", prefix,
                                            "' (use metrics., params., tags. or an "
                                            "attribute)"));
    }
    if (key.empty()) return Lexer::Error(token.pos, "missing key after '" + prefix + ".'");
    if (field.kind != FieldKind::kAttribute) {
      field.key = key;
      return field;
    }
    text = key;
  }
  field.kind = FieldKind::kAttribute;
  field.attribute = AttributeByName(text);
  if (field.attribute == Attribute::kNone) {
    return Lexer::Error(token.pos, StrCat("unknown attribute '", text,
                                          "' (status, start_time, end_time, name, run_id, "
                                          "experiment_id; or metrics./params./tags.<key>)"));
  }
  field.key = AttributeName(field.attribute);
  return field;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, FilterDialect dialect)
      : tokens_(std::move(tokens)), dialect_(dialect) {}
  static constexpr int kMaxNesting = 32;

  absl::StatusOr<std::unique_ptr<Expr>> ParseAll() {
    auto expr = ParseOr();
    if (!expr.ok()) return expr.status();
    if (Peek().kind != Token::Kind::kEnd) {
      return Lexer::Error(
          Peek().pos, StrCat("expected 'and', 'or' or end of filter, found ", Describe(Peek())));
    }
    return expr;
  }

 private:
  const Token& Peek(size_t ahead = 0) const {
    size_t i = std::min(index_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  const Token& Next() {
    const Token& token = tokens_[index_];
    if (index_ + 1 < tokens_.size()) ++index_;
    return token;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseOr() {
    auto first = ParseAnd();
    if (!first.ok()) return first.status();
    if (!IsKeyword(Peek(), "or")) return first;
    auto node = std::make_unique<Expr>();
    node->type = Expr::Type::kOr;
    node->children.push_back(std::move(*first));
    while (IsKeyword(Peek(), "or")) {
      Next();
      auto child = ParseAnd();
      if (!child.ok()) return child.status();
      node->children.push_back(std::move(*child));
    }
    return node;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseAnd() {
    auto first = ParsePrimary();
    if (!first.ok()) return first.status();
    if (!IsKeyword(Peek(), "and")) return first;
    auto node = std::make_unique<Expr>();
    node->type = Expr::Type::kAnd;
    node->children.push_back(std::move(*first));
    while (IsKeyword(Peek(), "and")) {
      Next();
      auto child = ParsePrimary();
      if (!child.ok()) return child.status();
      node->children.push_back(std::move(*child));
    }
    return node;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParsePrimary() {
    if (Peek().kind == Token::Kind::kLParen) {
      // Bounded: the parser and the evaluator recurse once per level, and ~3,000 nested
      // parentheses overflowed a server thread's stack (found with tests/fuzz/filter_fuzz.cc).
      if (depth_ == kMaxNesting) {
        return Lexer::Error(Peek().pos, StrCat("parentheses nested deeper than ", kMaxNesting));
      }
      Next();
      ++depth_;
      auto inner = ParseOr();
      --depth_;
      if (!inner.ok()) return inner.status();
      if (Peek().kind != Token::Kind::kRParen) {
        return Lexer::Error(Peek().pos, StrCat("expected ')', found ", Describe(Peek())));
      }
      Next();
      return inner;
    }
    return ParseComparison();
  }

  absl::StatusOr<Value> ParseValue(const Field& field) {
    const Token& token = Peek();
    Value value;
    if (token.kind == Token::Kind::kNumber) {
      value.is_number = true;
      value.number = token.number;
      value.text = token.text;
    } else if (token.kind == Token::Kind::kString) {
      value.text = token.text;
    } else {
      return Lexer::Error(token.pos, StrCat("expected a value after ", field.ToString(), ", found ",
                                            Describe(token)));
    }
    if (field.numeric() && !value.is_number) {
      return Lexer::Error(token.pos,
                          StrCat(field.ToString(), " compares as a number; got a string"));
    }
    bool typed_property =
        field.kind == FieldKind::kProperty || field.kind == FieldKind::kCustomProperty;
    if (!field.numeric() && !typed_property) {
      // Params and tags are strings; a bare number is taken as its text ("params.epochs = 10").
      value.is_number = false;
    }
    if (field.attribute == Attribute::kStatus) {
      std::string upper = ToUpper(value.text);
      if (upper != "RUNNING" && upper != "FINISHED" && upper != "FAILED" && upper != "KILLED") {
        return Lexer::Error(token.pos, StrCat("unknown status '", value.text,
                                              "' (RUNNING, FINISHED, FAILED, KILLED)"));
      }
      value.text = upper;
    }
    // Lineage states and kinds compare as the enums print, whatever case the filter wrote.
    if (field.kind == FieldKind::kAttribute && field.attribute == Attribute::kState) {
      value.text = ToUpper(value.text);
    } else if (field.kind == FieldKind::kAttribute && field.attribute == Attribute::kKind) {
      value.text = ToLower(value.text);
    }
    Next();
    return value;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseComparison() {
    const Token& field_token = Peek();
    if (field_token.kind != Token::Kind::kWord) {
      return Lexer::Error(field_token.pos, StrCat("expected a field such as metrics.<key>, found ",
                                                  Describe(field_token)));
    }
    auto field = FieldFromWord(field_token, dialect_);
    if (!field.ok()) return field.status();
    Next();
    auto node = std::make_unique<Expr>();
    node->type = Expr::Type::kCompare;
    node->field = *field;
    bool negated = false;
    if (IsKeyword(Peek(), "not")) {
      negated = true;
      Next();
      if (!IsKeyword(Peek(), "in") && !IsKeyword(Peek(), "like") && !IsKeyword(Peek(), "ilike")) {
        return Lexer::Error(
            Peek().pos, StrCat("expected in, like or ilike after 'not', found ", Describe(Peek())));
      }
    }
    const Token& op = Peek();
    if (op.kind == Token::Kind::kOp) {
      static const std::pair<const char*, CompareOp> kOps[] = {
          {"=", CompareOp::kEq},  {"!=", CompareOp::kNe}, {"<", CompareOp::kLt},
          {"<=", CompareOp::kLe}, {">", CompareOp::kGt},  {">=", CompareOp::kGe}};
      for (const auto& [text, value] : kOps) {
        if (op.text == text) node->op = value;
      }
      Next();
      auto value = ParseValue(node->field);
      if (!value.ok()) return value.status();
      node->values.push_back(std::move(*value));
      return node;
    }
    if (IsKeyword(op, "in")) {
      node->op = negated ? CompareOp::kNotIn : CompareOp::kIn;
      Next();
      if (Peek().kind != Token::Kind::kLParen) {
        return Lexer::Error(Peek().pos, StrCat("expected '(' after in, found ", Describe(Peek())));
      }
      Next();
      while (true) {
        auto value = ParseValue(node->field);
        if (!value.ok()) return value.status();
        node->values.push_back(std::move(*value));
        if (Peek().kind == Token::Kind::kComma) {
          Next();
          continue;
        }
        if (Peek().kind == Token::Kind::kRParen) {
          Next();
          break;
        }
        return Lexer::Error(Peek().pos,
                            StrCat("expected ',' or ')' in the in-list, found ", Describe(Peek())));
      }
      return node;
    }
    if (IsKeyword(op, "like") || IsKeyword(op, "ilike")) {
      bool ignore_case = IsKeyword(op, "ilike");
      node->op = ignore_case ? (negated ? CompareOp::kNotILike : CompareOp::kILike)
                             : (negated ? CompareOp::kNotLike : CompareOp::kLike);
      if (node->field.numeric()) {
        return Lexer::Error(
            op.pos, StrCat(node->field.ToString(), " is numeric; like needs a string field"));
      }
      Next();
      if (Peek().kind != Token::Kind::kString) {
        return Lexer::Error(
            Peek().pos, StrCat("expected a quoted pattern after like, found ", Describe(Peek())));
      }
      auto value = ParseValue(node->field);
      if (!value.ok()) return value.status();
      node->values.push_back(std::move(*value));
      return node;
    }
    return Lexer::Error(op.pos, StrCat("expected an operator (=, !=, <, <=, >, >=, in, like) "
                                       "after ",
                                       node->field.ToString(), ", found ", Describe(op)));
  }

  std::vector<Token> tokens_;
  FilterDialect dialect_;
  int depth_ = 0;  // parentheses open around the current position
  size_t index_ = 0;
};

}  // namespace

std::string Field::ToString() const {
  switch (kind) {
    case FieldKind::kMetric:
      return "metrics." + key;
    case FieldKind::kParam:
      return "params." + key;
    case FieldKind::kTag:
      return "tags." + key;
    case FieldKind::kAttribute:
      return key;
    case FieldKind::kProperty:
      return "properties." + key;
    case FieldKind::kCustomProperty:
      return "custom_properties." + key;
  }
  return key;
}

absl::StatusOr<std::unique_ptr<Expr>> ParseFilter(std::string_view text, FilterDialect dialect) {
  auto tokens = Lexer(text).Tokenize();
  if (!tokens.ok()) return tokens.status();
  if (tokens->size() == 1) return std::unique_ptr<Expr>();
  return Parser(std::move(*tokens), dialect).ParseAll();
}

absl::StatusOr<OrderBy> ParseOrderBy(std::string_view text) {
  auto tokens = Lexer(text).Tokenize();
  if (!tokens.ok()) {
    return absl::InvalidArgumentError(StrCat("order_by: ", tokens.status().message().substr(8)));
  }
  auto error = [&](const std::string& message) {
    return absl::InvalidArgumentError(StrCat("order_by '", std::string(text), "': ", message));
  };
  if (tokens->empty() || (*tokens)[0].kind != Token::Kind::kWord) {
    return error("expected a field such as metrics.acc, params.lr or start_time");
  }
  auto field = FieldFromWord((*tokens)[0], FilterDialect::kRuns);
  if (!field.ok()) return error(std::string(field.status().message().substr(8)));
  OrderBy order;
  order.field = *field;
  size_t next = 1;
  if ((*tokens)[next].kind == Token::Kind::kWord) {
    if (IsKeyword((*tokens)[next], "desc")) {
      order.descending = true;
    } else if (!IsKeyword((*tokens)[next], "asc")) {
      return error("expected ASC or DESC after the field");
    }
    ++next;
  }
  if ((*tokens)[next].kind != Token::Kind::kEnd)
    return error("unexpected text after the direction");
  return order;
}

namespace {

// Bytes in the UTF-8 character that starts at text[i] (1 for ASCII and for a stray byte).
size_t CharLength(std::string_view text, size_t i) {
  unsigned char c = static_cast<unsigned char>(text[i]);
  size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  size_t end = std::min(text.size(), i + n);
  for (size_t j = i + 1; j < end; ++j) {
    if ((static_cast<unsigned char>(text[j]) & 0xC0) != 0x80) return j - i;
  }
  return end - i;
}

}  // namespace

bool LikeMatch(std::string_view text, std::string_view pattern, bool ignore_case) {
  // Iterative wildcard matching with backtracking to the last '%', a character (UTF-8 code
  // point) at a time.
  size_t t = 0, p = 0, star_p = std::string_view::npos, star_t = 0;
  auto eq = [ignore_case](char a, char b) {
    return ignore_case ? std::tolower(static_cast<unsigned char>(a)) ==
                             std::tolower(static_cast<unsigned char>(b))
                       : a == b;
  };
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '%') {
      star_p = p++;
      star_t = t;
      continue;
    }
    if (p < pattern.size()) {
      bool escaped = pattern[p] == '\\' && p + 1 < pattern.size();
      size_t pattern_char = escaped ? p + 1 : p;
      size_t pattern_len = CharLength(pattern, pattern_char);
      size_t text_len = CharLength(text, t);
      if (!escaped && pattern[p] == '_') {
        p += 1;
        t += text_len;
        continue;
      }
      if (pattern_len == text_len) {
        bool same = true;
        for (size_t k = 0; k < text_len && same; ++k)
          same = eq(pattern[pattern_char + k], text[t + k]);
        if (same) {
          p = pattern_char + pattern_len;
          t += text_len;
          continue;
        }
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p + 1;
    star_t += CharLength(text, star_t);
    t = star_t;
  }
  while (p < pattern.size() && pattern[p] == '%') ++p;
  return p == pattern.size();
}

namespace {

// -1, 0, 1 comparing a field value with a filter value; nullopt when incomparable (NaN).
std::optional<int> Compare(const FieldValue& value, const Value& operand) {
  if (value.numeric) {
    if (std::isnan(value.number) || std::isnan(operand.number)) return std::nullopt;
    if (value.number < operand.number) return -1;
    return value.number > operand.number ? 1 : 0;
  }
  int c = value.text.compare(operand.text);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

}  // namespace

bool MatchesLeaf(const Expr& expr, const FieldValue& value) {
  if (!value.present) return false;
  switch (expr.op) {
    case CompareOp::kEq:
    case CompareOp::kLt:
    case CompareOp::kLe:
    case CompareOp::kGt:
    case CompareOp::kGe: {
      auto c = Compare(value, expr.values[0]);
      if (!c) return false;
      switch (expr.op) {
        case CompareOp::kEq:
          return *c == 0;
        case CompareOp::kLt:
          return *c < 0;
        case CompareOp::kLe:
          return *c <= 0;
        case CompareOp::kGt:
          return *c > 0;
        default:
          return *c >= 0;
      }
    }
    case CompareOp::kNe: {
      auto c = Compare(value, expr.values[0]);
      return !c || *c != 0;
    }
    case CompareOp::kIn:
    case CompareOp::kNotIn: {
      bool found = false;
      for (const Value& operand : expr.values) {
        auto c = Compare(value, operand);
        if (c && *c == 0) {
          found = true;
          break;
        }
      }
      return expr.op == CompareOp::kIn ? found : !found;
    }
    case CompareOp::kLike:
      return LikeMatch(value.text, expr.values[0].text, false);
    case CompareOp::kNotLike:
      return !LikeMatch(value.text, expr.values[0].text, false);
    case CompareOp::kILike:
      return LikeMatch(value.text, expr.values[0].text, true);
    case CompareOp::kNotILike:
      return !LikeMatch(value.text, expr.values[0].text, true);
  }
  return false;
}

}  // namespace mlops::metadata
