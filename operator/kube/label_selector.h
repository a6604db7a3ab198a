#pragma once
// Label selectors as the API server reads them (`app=x,tier!=db,env in (a,b),!legacy`), checked
// before use so that a typo in a flag is told at start rather than as a watch failing forever.

#include <optional>
#include <string>
#include <string_view>

namespace datashare::kube {

// Empty when `selector` is a valid label selector (the empty one selects everything); otherwise
// what is wrong with it, naming the requirement.
std::optional<std::string> label_selector_problem(std::string_view selector);

}  // namespace datashare::kube
