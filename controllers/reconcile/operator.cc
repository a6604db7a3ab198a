#include "controllers/reconcile/operator.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/log.h"
#include "operator/kube/error.h"
#include "operator/runtime/conditions.h"
#include "operator/runtime/finalizers.h"
#include "operator/runtime/rfc3339.h"

namespace datashare::controllers {

namespace kinds {
const kube::resource_kind data_products{"datashare.io", "v1alpha1", "dataproducts", "DataProduct", true};
const kube::resource_kind data_sharing_policies{"datashare.io", "v1alpha1", "datasharingpolicies", "DataSharingPolicy",
                                                true};
const kube::resource_kind stateful_sets{"apps", "v1", "statefulsets", "StatefulSet", true};
const kube::resource_kind persistent_volume_claims{"", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true};
}  // namespace kinds

namespace {

constexpr const char* kProductIndex = "product";    // policies by "ns/product"
constexpr const char* kConsumerIndex = "consumer";  // policies by workload key
constexpr const char* kOwnerIndex = "owner";        // products by workload key
constexpr const char* kTopicIndex = "topic";        // products by topic name
constexpr std::chrono::seconds kReadyBatch{2};
constexpr std::chrono::seconds kLagSlice{1};

std::string str_at(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* k : path) {
    if (!cur->is_object()) return "";
    auto it = cur->find(k);
    if (it == cur->end()) return "";
    cur = &*it;
  }
  return cur->is_string() ? cur->get<std::string>() : "";
}

workload_id consumer_of(const json& policy) {
  std::string kind = str_at(policy, {"spec", "consumer", "workload", "kind"});
  return {str_at(policy, {"metadata", "namespace"}), kind.empty() ? "Deployment" : kind,
          str_at(policy, {"spec", "consumer", "workload", "name"})};
}

workload_id owner_of(const json& product) {
  std::string kind = str_at(product, {"spec", "owner", "workload", "kind"});
  return {str_at(product, {"metadata", "namespace"}), kind.empty() ? "Deployment" : kind,
          str_at(product, {"spec", "owner", "workload", "name"})};
}

std::string product_key_of(const json& policy) {
  std::string ns = str_at(policy, {"spec", "product", "namespace"});
  if (ns.empty()) ns = str_at(policy, {"metadata", "namespace"});
  return ns + "/" + str_at(policy, {"spec", "product", "name"});
}

workload_id workload_of_object(const json& o, const std::string& kind) {
  return {str_at(o, {"metadata", "namespace"}), kind, str_at(o, {"metadata", "name"})};
}

product_view make_product_view(const json& o) {
  product_view v{parse_data_product(o)};
  if (auto st = o.find("status"); st != o.end() && st->is_object()) {
    if (auto t = st->find("topic"); t != st->end() && t->is_object()) v.topic_partitions = t->value("partitions", 0);
  }
  return v;
}

policy_view make_policy_view(const json& o) {
  return {parse_data_sharing_policy(o), meta_of(o), str_at(o, {"spec", "mode"}), runtime::is_true(o, "Ready")};
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

datashare_operator::datashare_operator(kube::client& client, topic_admin& kafka, runtime::event_recorder& events,
                                       prometheus::Registry& registry, operator_options options)
    : client_(client),
      kafka_(kafka),
      events_(events),
      options_(std::move(options)),
      product_views_(make_product_view),
      policy_views_(make_policy_view),
      lag_events_(prometheus::BuildGauge()
                      .Name("datashare_policy_lag_events")
                      .Help("Events in the product's topic not yet committed by the policy's consumer group")
                      .Register(registry)),
      lag_seconds_(prometheus::BuildGauge()
                       .Name("datashare_policy_lag_seconds")
                       .Help("Estimated age of the oldest event the policy's copy has not applied (0: caught up)")
                       .Register(registry)),
      max_lag_(prometheus::BuildGauge()
                   .Name("datashare_policy_max_lag_seconds")
                   .Help("The policy's staleness budget (spec.consistency.maxLag)")
                   .Register(registry)),
      edge_(prometheus::BuildGauge()
                .Name("datashare_sharing_edge")
                .Help("1 for each sharing relation: owner workload, consumer workload, mode and product")
                .Register(registry)) {}

datashare_operator::~datashare_operator() = default;

void datashare_operator::register_with(runtime::manager& mgr) {
  const std::string& ns = options_.watch_namespace;
  auto informer_for = [&](const kube::resource_kind& kind, std::string selector = "") {
    // Watch failures are retried by the watcher; logged so an outage or an expiry (410, then a
    // re-list) can be seen.
    return std::make_unique<runtime::informer>(
        client_, runtime::watcher_options{.kind = kind,
                                          .ns = ns,
                                          .label_selector = std::move(selector),
                                          .on_error = [](const std::string& what, const std::exception& e) {
                                            log::warn("watch failed", {{"what", what}, {"error", e.what()}});
                                          }});
  };
  auto products = informer_for(kinds::data_products, options_.resource_selector);
  products->cache().add_index(kOwnerIndex, [](const json& o) { return std::vector<std::string>{owner_of(o).key()}; });
  products->cache().add_index(kTopicIndex, [](const json& o) {
    return std::vector<std::string>{str_at(o, {"spec", "topic", "name"})};
  });
  auto policies = informer_for(kinds::data_sharing_policies, options_.resource_selector);
  policies->cache().add_index(kProductIndex, [](const json& o) { return std::vector<std::string>{product_key_of(o)}; });
  policies->cache().add_index(kConsumerIndex,
                              [](const json& o) { return std::vector<std::string>{consumer_of(o).key()}; });
  products_ = &mgr.add_informer(std::move(products));
  policies_ = &mgr.add_informer(std::move(policies));
  deployments_ = &mgr.add_informer(informer_for(kube::resources::deployments));
  statefulsets_ = &mgr.add_informer(informer_for(kinds::stateful_sets));
  config_maps_ =
      &mgr.add_informer(informer_for(kube::resources::config_maps, std::string(kManagedByLabel) + "=" + kManagedBy));

  auto& pc = mgr.add_controller(std::make_unique<runtime::controller>(
      runtime::controller_options{.name = "dataproduct", .workers = options_.workers, .registry = &mgr.registry()},
      [this](const runtime::request& r) { return reconcile_product(r); }));
  auto& sc = mgr.add_controller(std::make_unique<runtime::controller>(
      runtime::controller_options{
          .name = "datasharingpolicy", .workers = options_.workers, .registry = &mgr.registry()},
      [this](const runtime::request& r) { return reconcile_policy(r); }));
  auto& lc = mgr.add_controller(std::make_unique<runtime::controller>(
      runtime::controller_options{.name = "lag", .workers = 1, .registry = &mgr.registry()},
      [this](const runtime::request&) { return measure_lag(); }));
  policy_controller_ = &sc;

  // Updates that change only a status (the controllers' own writes, the lag) wake nobody.
  const runtime::update_filter spec_changed = runtime::changed_outside_status;
  pc.watch_for(*products_, spec_changed);
  // A policy changes its product's consumers and gateway.
  // What a product or a policy reads of its related objects is their spec and whether they are
  // being deleted: their finalizer and status writes wake nobody else (at start-up each policy's
  // finalizer would otherwise rewrite its product's status once per policy).
  const runtime::update_filter spec_or_deletion = runtime::spec_or_deletion_changed;
  pc.watch_mapped(
      *policies_, [](const json& o) { return std::vector<std::string>{product_key_of(o)}; }, spec_or_deletion);
  // Except its Ready condition, which the product lists among its consumers: those flips come in
  // bursts (every policy of a product at start-up), so the product is rewritten at most once per
  // kReadyBatch for them rather than once per policy.
  auto* product_controller = &pc;
  policies_->add_handler(
      {.on_update = [product_controller](const runtime::object_ptr& old, const runtime::object_ptr& now) {
        if (runtime::is_true(*old, "Ready") != runtime::is_true(*now, "Ready") &&
            !runtime::changed_outside_status(*old, *now))
          product_controller->queue().add_after(product_key_of(*now), kReadyBatch);
      }});
  auto* products_cache = &products_->cache();
  auto* policies_cache = &policies_->cache();
  // A workload appearing, changing or going: the products it owns, the policies it consumes.
  auto owners_of = [products_cache](const std::string& kind) {
    return [products_cache, kind](const json& o) {
      std::vector<std::string> keys;
      for (const auto& p : products_cache->by_index(kOwnerIndex, workload_of_object(o, kind).key()))
        keys.push_back(kube::object_key(*p));
      return keys;
    };
  };
  auto consumers_of = [policies_cache](const std::string& kind) {
    return [policies_cache, kind](const json& o) {
      std::vector<std::string> keys;
      for (const auto& p : policies_cache->by_index(kConsumerIndex, workload_of_object(o, kind).key()))
        keys.push_back(kube::object_key(*p));
      return keys;
    };
  };
  pc.watch_mapped(*deployments_, owners_of("Deployment"), spec_or_deletion);
  pc.watch_mapped(*statefulsets_, owners_of("StatefulSet"), spec_or_deletion);
  pc.watch_owned(*deployments_, "DataProduct", true, spec_changed);  // gateway Deployments
  pc.watch_owned(*config_maps_, "DataProduct", false, spec_changed);

  sc.watch_for(*policies_, spec_changed);
  sc.watch_mapped(
      *products_,
      [policies_cache](const json& o) {
        std::vector<std::string> keys;
        for (const auto& p : policies_cache->by_index(kProductIndex, kube::object_key(o)))
          keys.push_back(kube::object_key(*p));
        return keys;
      },
      spec_or_deletion);
  sc.watch_mapped(*deployments_, consumers_of("Deployment"), spec_or_deletion);
  sc.watch_mapped(*statefulsets_, consumers_of("StatefulSet"), spec_or_deletion);
  sc.watch_owned(*config_maps_, "DataSharingPolicy", false, spec_changed);

  lc.queue().add("lag");
}

// ---- Shared reads -------------------------------------------------------------------------

std::shared_ptr<const product_view> datashare_operator::product_at(const std::string& key) const {
  return product_views_.get(products_->cache(), key);
}

std::shared_ptr<const policy_view> datashare_operator::policy_at(const std::string& key) const {
  return policy_views_.get(policies_->cache(), key);
}

std::optional<data_product> datashare_operator::valid_product(const std::string& key) const {
  auto v = product_at(key);
  if (!v || !v->spec.value || v->spec.value->meta.deleting) return std::nullopt;
  return v->spec.value;
}

bool datashare_operator::owns_topic(const data_product& p) const {
  std::vector<data_product> claimants;
  for (const auto& k : products_->cache().keys_by_index(kTopicIndex, p.topic.name)) {
    if (auto v = product_at(k); v && v->spec.value) claimants.push_back(*v->spec.value);
  }
  return claimants.empty() || topic_owner(claimants) == p.meta.key();
}

resolution datashare_operator::resolve(const policy_view& view) const {
  resolution r;
  const auto& parsed = view.spec;
  if (!parsed.value) {
    r.reason = "InvalidSpec";
    r.message = describe(parsed.problems);
    return r;
  }
  r.policy = parsed.value;
  const auto& pol = *r.policy;
  auto prod_view = product_at(pol.product_key());
  if (!prod_view) {
    r.reason = "ProductNotFound";
    r.message = "DataProduct " + pol.product_key() + " does not exist";
    return r;
  }
  const auto& prod = prod_view->spec;
  if (!prod.value) {
    r.reason = "ProductInvalid";
    r.message = "DataProduct " + pol.product_key() + " is invalid: " + describe(prod.problems);
    return r;
  }
  if (prod.value->meta.deleting) {
    r.reason = "ProductDeleting";
    r.message = "DataProduct " + pol.product_key() + " is being deleted";
    return r;
  }
  r.product = prod.value;
  const auto& p = *r.product;
  if (!p.allows(pol.meta.ns)) {
    r.condition = "AccessGranted";
    r.reason = "NamespaceNotAllowed";
    r.message = "DataProduct " + p.meta.key() + " does not grant access to namespace " + pol.meta.ns +
                " (spec.access.namespaces of the product)";
    return r;
  }
  std::vector<std::string> unknown;
  std::vector<std::string> restricted;
  for (const auto& f : pol.fields) {
    const product_field* pf = p.find_field(f);
    if (pf == nullptr) {
      unknown.push_back(f);
    } else if (pf->restricted) {
      restricted.push_back(f);
    }
  }
  for (const auto& f : pol.sync_fields) {
    if (p.find_field(f) == nullptr) unknown.push_back(f);
  }
  if (!unknown.empty()) {
    r.reason = "UnknownField";
    r.message = "fields not in DataProduct " + p.meta.key() + ": " + join(unknown) + " (product fields: " + [&] {
      std::vector<std::string> names;
      for (const auto& f : p.fields) names.push_back(f.name);
      return join(names);
    }() + ")";
    return r;
  }
  if (!restricted.empty()) {
    r.reason = "RestrictedField";
    r.message = "restricted fields are never copied, only read through the owner: move " + join(restricted) +
                " to spec.syncFields";
    return r;
  }
  if (!pol.sync_fields.empty() && (p.read_path.empty() || p.endpoint_service.empty())) {
    r.reason = "OwnerEndpointMissing";
    r.message = "syncFields are read through the owner, but DataProduct " + p.meta.key() +
                " has no spec.owner.endpoint.readPath";
    return r;
  }
  if (pol.needs_gateway() && p.write_path.empty()) {
    r.reason = "OwnerEndpointMissing";
    r.message = "a sync-mode copy is updated through the gateway, which writes via the owner: DataProduct " +
                p.meta.key() + " has no spec.owner.endpoint.writePath";
    return r;
  }
  return r;
}

std::vector<resolved_policy> datashare_operator::resolved_policies_of(const data_product& p) const {
  std::vector<resolved_policy> out;
  for (const auto& k : policies_->cache().keys_by_index(kProductIndex, p.meta.key())) {
    auto v = policy_at(k);
    if (!v) continue;
    auto r = resolve(*v);
    if (r.ok() && !r.policy->meta.deleting) out.push_back({*r.policy, *r.product});
  }
  return out;
}

// ---- Workloads ----------------------------------------------------------------------------

workload_result datashare_operator::sync_workload(const workload_id& w) {
  std::shared_ptr<std::mutex> lock;
  {
    std::lock_guard g(locks_mu_);
    auto& l = workload_locks_[w.key()];
    if (!l) l = std::make_shared<std::mutex>();
    lock = l;
  }
  std::lock_guard g(*lock);

  sidecar_plan plan{.workload = w};
  for (const auto& k : products_->cache().keys_by_index(kOwnerIndex, w.key())) {
    auto p = valid_product(k);
    if (!p || !owns_topic(*p)) continue;
    if (product_needs_gateway(*p, resolved_policies_of(*p))) plan.owner_gateways.push_back(p->meta.key());
    plan.publishes.push_back(std::move(*p));
  }
  for (const auto& k : policies_->cache().keys_by_index(kConsumerIndex, w.key())) {
    auto v = policy_at(k);
    if (!v) continue;
    auto r = resolve(*v);
    if (r.ok() && !r.policy->meta.deleting) plan.subscribes.push_back({*r.policy, *r.product});
  }

  runtime::informer* inf = w.kind == "StatefulSet" ? statefulsets_ : deployments_;
  auto workload = inf->cache().get(w.ns + "/" + w.name);
  const kube::resource_kind& kind = w.kind == "StatefulSet" ? kinds::stateful_sets : kube::resources::deployments;
  workload_result result;
  result.exists = workload != nullptr;
  result.config_map = sidecar_config_map_name(w);
  auto cm = config_maps_->cache().get(w.ns + "/" + result.config_map);

  auto has_sidecar = [&] {
    if (!workload) return false;
    const json* spec = &(*workload)["spec"]["template"]["spec"];
    if (!spec->contains("initContainers")) return false;
    for (const auto& c : (*spec)["initContainers"])
      if (c.value("name", "") == kSidecarContainer) return true;
    return false;
  };

  if (plan.empty()) {
    if (has_sidecar()) {
      client_.apply(kind, remove_sidecar_intent(w), {.field_manager = kFieldManager, .force = true});
      log::info("sidecar removed", {{"workload", w.key()}});
    }
    if (cm) client_.remove(kube::resources::config_maps, w.ns, result.config_map);
    try {
      client_.remove(kube::resources::services, w.ns, participant_service_name(w));
    } catch (const kube::api_error& e) {
      if (!kube::is_not_found(e)) throw;
    }
    return result;
  }

  std::string text = render_sidecar_config(plan, options_.sidecar);
  result.hash = config_hash(text);
  json desired_cm = sidecar_config_map(plan, text);
  if (!cm || (*cm)["data"].value("sidecar.yaml", "") != text ||
      (*cm)["metadata"].value("ownerReferences", json::array()) != desired_cm["metadata"]["ownerReferences"]) {
    client_.apply(kube::resources::config_maps, desired_cm, {.field_manager = kFieldManager, .force = true});
  }
  if (!workload) return result;

  const json annotations = (*workload)["spec"]["template"]["metadata"].value("annotations", json::object());
  std::string current_hash = annotations.value(kConfigHashAnnotation, "");
  bool participates = plan.participates();
  bool has_tx_port = false;
  if (has_sidecar()) {
    for (const auto& c : (*workload)["spec"]["template"]["spec"]["initContainers"]) {
      if (c.value("name", "") != kSidecarContainer) continue;
      if (c.value("image", "") != options_.sidecar.image) current_hash.clear();  // image changed: apply
      for (const auto& port : c.value("ports", json::array()))
        if (port.value("name", "") == "ds-tx") has_tx_port = true;
    }
  }
  if (!has_sidecar() || current_hash != result.hash || has_tx_port != participates) {
    client_.apply(kind, sidecar_apply_intent(plan, result.hash, options_.sidecar),
                  {.field_manager = kFieldManager, .force = true});
    log::info("sidecar injected", {{"workload", w.key()}, {"hash", result.hash}});
    // One event where the rollout happens, not one per policy sharing the sidecar (at start-up
    // that was an API write per policy for the same news).
    events_.record(runtime::reference_to(*workload, kind), runtime::event_type::normal, "SidecarConfigured", "Inject",
                   "pods roll to sidecar config " + result.hash + " (" + std::to_string(plan.publishes.size()) +
                       " published, " + std::to_string(plan.subscribes.size()) + " subscribed)");
  }
  if (participates) {
    json selector = (*workload)["spec"]["selector"].value("matchLabels", json::object());
    client_.apply(kube::resources::services, participant_service(plan, selector, options_.sidecar),
                  {.field_manager = kFieldManager, .force = true});
  }
  result.injected = true;
  return result;
}

// ---- Status helpers -----------------------------------------------------------------------

bool datashare_operator::write_status(const kube::resource_kind& kind, const json& object, const json& status) {
  if (object.value("status", json::object()) == status) return false;
  client_.merge_patch(kind, kube::namespace_of(object), kube::name_of(object), {{"status", status}}, true);
  return true;
}

void datashare_operator::ensure_finalizer(const kube::resource_kind& kind, const json& object) {
  auto updated = runtime::add_finalizer(object, kFinalizer);
  if (!updated) return;
  client_.merge_patch(kind, kube::namespace_of(object), kube::name_of(object),
                      {{"metadata",
                        {{"finalizers", (*updated)["metadata"]["finalizers"]},
                         {"resourceVersion", object["metadata"]["resourceVersion"]}}}});
}

void datashare_operator::remove_finalizer(const kube::resource_kind& kind, const json& object) {
  auto updated = runtime::remove_finalizer(object, kFinalizer);
  if (!updated) return;
  try {
    client_.merge_patch(kind, kube::namespace_of(object), kube::name_of(object),
                        {{"metadata",
                          {{"finalizers", (*updated)["metadata"]["finalizers"]},
                           {"resourceVersion", object["metadata"]["resourceVersion"]}}}});
  } catch (const kube::api_error& e) {
    if (!kube::is_not_found(e)) throw;
  }
}

// ---- DataProduct --------------------------------------------------------------------------

runtime::reconcile_result datashare_operator::reconcile_product(const runtime::request& req) {
  auto obj_ptr = products_->cache().get(req.key());
  if (!obj_ptr) {
    (void)product_at(req.key());  // drops its parsed view
    return {};
  }
  const json& obj = *obj_ptr;
  const auto now = runtime::system_wall_clock();
  object_meta meta = meta_of(obj);
  auto parsed = parse_data_product(obj);
  json status = obj.value("status", json::object());
  json with_status = obj;
  auto set = [&](const std::string& type, bool ok, const std::string& reason, const std::string& message) {
    runtime::set_condition(with_status, {type, ok ? "True" : "False", reason, message}, meta.generation, now);
  };

  if (meta.deleting) {
    if (!runtime::has_finalizer(obj, kFinalizer)) return {};
    if (parsed.value) {
      const auto& p = *parsed.value;
      sync_workload({p.meta.ns, p.owner.kind, p.owner.name});  // without this product: publisher goes
      if (p.topic.deletion_policy == "Delete" && owns_topic(p)) {
        bool removed = kafka_.remove(p.topic.name);
        kafka_.remove(p.topic.name + ".dlq");
        events_.record(runtime::reference_to(obj, kinds::data_products), runtime::event_type::normal,
                       removed ? "TopicDeleted" : "TopicAlreadyGone", "Delete",
                       "topic " + p.topic.name + (removed ? " deleted (deletionPolicy Delete)" : " was already gone"));
      } else {
        events_.record(runtime::reference_to(obj, kinds::data_products), runtime::event_type::normal, "TopicRetained",
                       "Delete", "topic " + p.topic.name + " kept (deletionPolicy " + p.topic.deletion_policy + ")");
      }
    }
    remove_finalizer(kinds::data_products, obj);
    return {};
  }
  // Then on with this version (the finalizer is stored before anything is created): the update's
  // own event brings one more pass, which finds nothing to do. Returning here instead would
  // put every object's first real pass behind a round trip through the watch.
  ensure_finalizer(kinds::data_products, obj);

  if (!parsed.value) {
    set("Ready", false, "InvalidSpec", describe(parsed.problems));
    with_status["status"]["observedGeneration"] = meta.generation;
    if (write_status(kinds::data_products, obj, with_status["status"]))
      events_.record(runtime::reference_to(obj, kinds::data_products), runtime::event_type::warning, "InvalidSpec",
                     "Validate", describe(parsed.problems));
    return {};
  }
  const data_product& p = *parsed.value;
  runtime::reconcile_result result{.requeue_after = options_.topic_resync};

  // Consumers (every policy naming this product, resolved or not).
  json consumers = json::array();
  std::vector<resolved_policy> resolved;
  for (const auto& k : policies_->cache().keys_by_index(kProductIndex, p.meta.key())) {
    auto v = policy_at(k);
    if (!v) continue;
    auto r = resolve(*v);
    const auto& m = v->meta;
    bool granted = r.ok() || (r.condition != "AccessGranted" && p.allows(m.ns));
    consumers.push_back(
        {{"namespace", m.ns}, {"name", m.name}, {"mode", v->mode}, {"accessGranted", granted}, {"ready", v->ready}});
    if (r.ok() && !m.deleting) resolved.push_back({*r.policy, *r.product});
  }
  std::sort(consumers.begin(), consumers.end(), [](const json& a, const json& b) {
    return std::tie(a["namespace"].get_ref<const std::string&>(), a["name"].get_ref<const std::string&>()) <
           std::tie(b["namespace"].get_ref<const std::string&>(), b["name"].get_ref<const std::string&>());
  });
  with_status["status"]["consumers"] = consumers;
  with_status["status"]["consumerCount"] = consumers.size();

  // Topic.
  bool topic_ok = false;
  std::string topic_reason;
  std::string topic_message;
  if (!owns_topic(p)) {
    std::vector<data_product> claimants;
    for (const auto& k : products_->cache().keys_by_index(kTopicIndex, p.topic.name))
      if (auto c = product_at(k); c && c->spec.value) claimants.push_back(*c->spec.value);
    topic_reason = "TopicConflict";
    topic_message = "topic " + p.topic.name + " belongs to DataProduct " + topic_owner(claimants) +
                    " (the older claim); choose another spec.topic.name";
  } else {
    try {
      desired_topic d = topic_for(p);
      auto observed = kafka_.describe(p.topic.name);
      topic_plan plan = plan_topic(d, observed);
      auto ref = runtime::reference_to(obj, kinds::data_products);
      if (plan.create) {
        kafka_.create(d);
        events_.record(ref, runtime::event_type::normal, "TopicCreated", "Create",
                       "topic " + d.name + " created with " + std::to_string(d.partitions) + " partitions");
        observed = kafka_.describe(p.topic.name);
      } else {
        if (plan.add_partitions_to > 0) {
          kafka_.add_partitions(d.name, plan.add_partitions_to);
          events_.record(ref, runtime::event_type::normal, "PartitionsAdded", "Update",
                         "topic " + d.name + " grown to " + std::to_string(plan.add_partitions_to) + " partitions");
        }
        if (plan.set_config) {
          kafka_.set_config(d.name, plan.config);
          events_.record(ref, runtime::event_type::normal, "ConfigDriftReverted", "Update",
                         "topic " + d.name + ": " + join(plan.drifted, "; "));
        }
        if (plan.add_partitions_to > 0 || plan.set_config) observed = kafka_.describe(p.topic.name);
      }
      // The dead-letter topic of the replicas (one partition, kept 7 days).
      if (!kafka_.describe(p.topic.name + ".dlq")) {
        kafka_.create({p.topic.name + ".dlq", 1, p.topic.replication_factor, {{"cleanup.policy", "delete"}}});
      }
      if (observed) {
        with_status["status"]["topic"] = {
            {"name", observed->name},
            {"partitions", observed->partitions},
            {"replicationFactor", observed->replication_factor},
            {"cleanupPolicy", observed->config.count("cleanup.policy") != 0 ? observed->config.at("cleanup.policy")
                                                                            : std::string("delete")}};
      }
      if (!plan.refused_reason.empty()) {
        topic_reason = plan.refused_reason;
        topic_message = plan.refused_message;
        if (!runtime::has_condition_status(obj, "TopicReady", "False"))
          events_.record(ref, runtime::event_type::warning, plan.refused_reason, "Update", plan.refused_message);
      } else {
        topic_ok = true;
      }
    } catch (const kafka_error& e) {
      topic_reason = e.transient() ? "KafkaUnavailable" : "TopicError";
      if (e.authentication()) topic_reason = "KafkaAuthenticationFailed";
      topic_message = e.what();
      result.requeue_after = std::min<std::chrono::milliseconds>(options_.topic_resync, std::chrono::seconds(10));
      events_.record(runtime::reference_to(obj, kinds::data_products), runtime::event_type::warning, topic_reason,
                     "Update", e.what());
    }
  }
  set("TopicReady", topic_ok, topic_ok ? "TopicReady" : topic_reason,
      topic_ok ? "topic " + p.topic.name + " matches the spec" : topic_message);

  // Publisher sidecar of the owner workload.
  workload_result w = sync_workload({p.meta.ns, p.owner.kind, p.owner.name});
  bool publisher_ok = w.injected || !owns_topic(p);
  if (!w.exists) {
    set("PublisherInjected", false, "WorkloadNotFound",
        p.owner.kind + " " + p.meta.ns + "/" + p.owner.name +
            " does not exist yet; the sidecar is injected when it appears");
  } else if (!owns_topic(p)) {
    set("PublisherInjected", false, "TopicConflict", "no publisher for a topic this product does not own");
  } else {
    set("PublisherInjected", true, "Injected",
        "publisher sidecar in " + p.owner.kind + " " + p.owner.name + " (config " + w.hash + ")");
  }

  // Gateway.
  bool needs_gateway = owns_topic(p) && product_needs_gateway(p, resolved);
  sync_gateway(p, obj, needs_gateway, resolved);
  if (needs_gateway) {
    int participants = 1;
    for (const auto& r : resolved) participants += r.policy.needs_gateway() ? 1 : 0;
    with_status["status"]["gateway"] = {{"url", gateway_url(p, options_.sidecar)}, {"participants", participants}};
    set("GatewayReady", true, "Deployed",
        "coordinator " + gateway_name(p) + " with " + std::to_string(participants) + " participants");
  } else {
    with_status["status"].erase("gateway");
    set("GatewayReady", true, "NotNeeded", "no sync-mode policy keeps a copy of this product");
  }

  bool ready = topic_ok && w.exists && publisher_ok;
  std::string reason = !topic_ok ? topic_reason : !w.exists ? "WorkloadNotFound" : "Ready";
  set("Ready", ready, reason,
      ready ? "topic, publisher and gateway in place"
            : (!topic_ok ? topic_message : "owner workload " + p.owner.name + " not found"));
  with_status["status"]["observedGeneration"] = meta.generation;
  write_status(kinds::data_products, obj, with_status["status"]);
  return result;
}

void datashare_operator::sync_gateway(const data_product& p, const json& object, bool needed,
                                      const std::vector<resolved_policy>& copies) {
  (void)object;
  const std::string name = gateway_name(p);
  if (needed) {
    for (const auto& o : gateway_objects(p, copies, options_.sidecar)) {
      std::string kind = o["kind"];
      const kube::resource_kind& k = kind == "ConfigMap"               ? kube::resources::config_maps
                                     : kind == "Service"               ? kube::resources::services
                                     : kind == "PersistentVolumeClaim" ? kinds::persistent_volume_claims
                                                                       : kube::resources::deployments;
      if (kind == "PersistentVolumeClaim") {
        // A claim's spec is immutable once bound: create it once, never re-apply.
        try {
          client_.create(k, o);
        } catch (const kube::api_error& e) {
          if (e.code() != kube::errc::already_exists) throw;
        }
        continue;
      }
      client_.apply(k, o, {.field_manager = kFieldManager, .force = true});
    }
    return;
  }
  // Not (or no longer) needed: remove what may exist. The cache of Deployments tells whether it does.
  if (!deployments_->cache().get(p.meta.ns + "/" + name)) return;
  for (const auto* k : {&kube::resources::deployments, &kube::resources::services, &kube::resources::config_maps}) {
    try {
      client_.remove(*k, p.meta.ns, name);
    } catch (const kube::api_error& e) {
      if (!kube::is_not_found(e)) throw;
    }
  }
  try {
    client_.remove(kinds::persistent_volume_claims, p.meta.ns, name + "-log");
  } catch (const kube::api_error& e) {
    if (!kube::is_not_found(e)) throw;
  }
}

// ---- DataSharingPolicy --------------------------------------------------------------------

void datashare_operator::set_edge(const data_sharing_policy& pol, const data_product* product) {
  std::lock_guard g(lag_mu_);
  auto key = pol.meta.key();
  prometheus::Labels labels;
  if (product != nullptr) {
    labels = {{"owner", product->meta.ns + "/" + product->owner.name},
              {"consumer", pol.meta.ns + "/" + pol.consumer.name},
              {"mode", pol.mode},
              {"product", product->meta.key()}};
  }
  auto it = edges_.find(key);
  if (it != edges_.end() && it->second != labels) {
    edge_.Remove(&edge_.Add(it->second));
    edges_.erase(it);
  }
  if (!labels.empty()) {
    edge_.Add(labels).Set(1);
    edges_[key] = labels;
  }
}

void datashare_operator::forget_policy_metrics(const std::string& key) {
  std::lock_guard g(lag_mu_);
  if (auto it = edges_.find(key); it != edges_.end()) {
    edge_.Remove(&edge_.Add(it->second));
    edges_.erase(it);
  }
  lag_.erase(key);
}

runtime::reconcile_result datashare_operator::reconcile_policy(const runtime::request& req) {
  auto obj_ptr = policies_->cache().get(req.key());
  if (!obj_ptr) {
    forget_policy_metrics(req.key());
    (void)policy_at(req.key());  // drops its parsed view
    return {};
  }
  const json& obj = *obj_ptr;
  const auto now = runtime::system_wall_clock();
  object_meta meta = meta_of(obj);
  json with_status = obj;
  auto set = [&](const std::string& type, bool ok, const std::string& reason, const std::string& message) {
    runtime::set_condition(with_status, {type, ok ? "True" : "False", reason, message}, meta.generation, now);
  };
  workload_id consumer = consumer_of(obj);

  if (meta.deleting) {
    if (!runtime::has_finalizer(obj, kFinalizer)) return {};
    sync_workload(consumer);  // resolves without this policy: its subscription (or the sidecar) goes
    forget_policy_metrics(req.key());
    remove_finalizer(kinds::data_sharing_policies, obj);
    events_.record(runtime::reference_to(obj, kinds::data_sharing_policies), runtime::event_type::normal,
                   "SidecarReleased", "Delete", "policy removed from " + consumer.kind + " " + consumer.name);
    return {};
  }
  ensure_finalizer(kinds::data_sharing_policies, obj);  // and on, as for products

  resolution r = resolve(make_policy_view(obj));  // this very version, not a cached parse
  const auto ref = runtime::reference_to(obj, kinds::data_sharing_policies);
  with_status["status"]["observedGeneration"] = meta.generation;
  if (!r.ok()) {
    // Whatever was injected for this policy before goes: the workload converges without it.
    workload_result w = sync_workload(consumer);
    (void)w;
    set_edge(r.policy ? *r.policy : data_sharing_policy{}, nullptr);
    if (r.reason == "InvalidSpec") {
      set("Ready", false, r.reason, r.message);
    } else {
      set("ProductResolved", r.condition != "ProductResolved", r.condition != "ProductResolved" ? "Resolved" : r.reason,
          r.condition != "ProductResolved" ? "DataProduct " + r.policy->product_key() + " found" : r.message);
      if (r.condition == "AccessGranted")
        set("AccessGranted", false, r.reason, r.message);
      else
        runtime::remove_condition(with_status, "AccessGranted");
      set("SidecarInjected", false, "NotResolved", "nothing is injected until the policy resolves");
      set("Ready", false, r.reason, r.message);
    }
    if (write_status(kinds::data_sharing_policies, obj, with_status["status"]) &&
        !runtime::has_condition_status(obj, "Ready", "False")) {
      events_.record(ref, runtime::event_type::warning, r.reason, "Resolve", r.message);
    }
    return {};
  }
  const data_sharing_policy& pol = *r.policy;
  const data_product& prod = *r.product;
  set("ProductResolved", true, "Resolved", "DataProduct " + prod.meta.key() + ", topic " + prod.topic.name);
  set("AccessGranted", true, "Granted",
      pol.meta.ns == prod.meta.ns ? "same namespace" : "namespace " + pol.meta.ns + " is in the product's access list");
  with_status["status"]["topic"] = prod.topic.name;
  with_status["status"]["consumerGroup"] = pol.consumer_group();

  workload_result w = sync_workload(consumer);
  if (!w.exists) {
    set("SidecarInjected", false, "WorkloadNotFound",
        consumer.kind + " " + consumer.ns + "/" + consumer.name +
            " does not exist yet; the sidecar is injected when it appears");
  } else {
    set("SidecarInjected", true, "Injected",
        "sidecar in " + consumer.kind + " " + consumer.name + " with config " + w.config_map + " (" + w.hash + ")");
    // A change of an injected sidecar's config is told on the policy too; its first
    // injection is told on the workload only (and by the Ready condition).
    const std::string previous_hash =
        obj.value("status", json::object()).value("sidecar", json::object()).value("configHash", "");
    if (previous_hash != w.hash && !previous_hash.empty() && !w.hash.empty()) {
      events_.record(ref, runtime::event_type::normal, "SidecarConfigured", "Inject",
                     consumer.kind + " " + consumer.name + " rolls to sidecar config " + w.hash);
    }
  }
  with_status["status"]["sidecar"] = {{"configMap", w.config_map}, {"configHash", w.hash}};
  set_edge(pol, &prod);

  bool within_budget = true;
  if (pol.consumes_topic()) {
    std::optional<lag_state> lag;
    {
      std::lock_guard g(lag_mu_);
      if (auto it = lag_.find(req.key()); it != lag_.end()) lag = it->second;
    }
    if (lag) {
      auto secs = std::round(lag->estimate.seconds * 1000) / 1000;
      with_status["status"]["lag"] = {{"events", lag->estimate.events},
                                      {"seconds", secs},
                                      {"observedAt", runtime::format_rfc3339(lag->observed_at)}};
      double budget = std::chrono::duration<double>(pol.max_lag_duration).count();
      within_budget = lag->estimate.events == 0 || lag->estimate.seconds <= budget;
      set("WithinLagBudget", within_budget, within_budget ? "WithinBudget" : "LagOverBudget",
          std::to_string(lag->estimate.events) + " events, ~" + std::to_string(static_cast<int64_t>(secs)) +
              " s behind (budget " + pol.max_lag + ")" + (lag->estimate.lower_bound ? ", at least" : ""));
      bool caught_up = lag->estimate.committed && lag->estimate.events == 0;
      if (caught_up || !runtime::is_true(obj, "ReplicaCaughtUp")) {
        set("ReplicaCaughtUp", caught_up || runtime::is_true(obj, "ReplicaCaughtUp"),
            caught_up ? "CaughtUp" : (lag->estimate.committed ? "Behind" : "NoOffsetsCommitted"),
            caught_up ? "the consumer group has committed every event"
                      : (lag->estimate.committed ? "the replica is applying the backlog"
                                                 : "no replica has committed offsets yet"));
      }
    } else {
      set("WithinLagBudget", true, "NotMeasuredYet", "the first lag measurement is pending");
    }
  } else {
    with_status["status"].erase("lag");
    runtime::remove_condition(with_status, "WithinLagBudget");
    runtime::remove_condition(with_status, "ReplicaCaughtUp");
  }

  bool ready = w.exists && within_budget;
  set("Ready", ready, !w.exists ? "WorkloadNotFound" : (!within_budget ? "LagOverBudget" : "Ready"),
      ready ? "sharing " + prod.meta.key() + " in " + pol.mode + " mode"
            : (!w.exists ? "the consumer workload does not exist" : "the local copy is older than its budget"));
  write_status(kinds::data_sharing_policies, obj, with_status["status"]);
  return {};
}

// ---- Lag ----------------------------------------------------------------------------------

runtime::reconcile_result datashare_operator::measure_lag() {
  // One sweep covers every policy; it runs in slices of at most kLagSlice, so that with many
  // policies (one Kafka round trip each) the operator still stops promptly and the sweep
  // yields the lag worker between slices. The next sweep starts lag_interval after one ends.
  const auto slice_end = std::chrono::steady_clock::now() + kLagSlice;
  if (lag_sweep_.empty()) {
    lag_sweep_ = policies_->cache().keys();
    sweep_watermarks_.clear();
  }
  auto& watermarks = sweep_watermarks_;  // topic → partition → hwm, read once per sweep
  std::vector<std::string> changed;
  while (!lag_sweep_.empty() && std::chrono::steady_clock::now() < slice_end) {
    const std::string k = std::move(lag_sweep_.back());
    lag_sweep_.pop_back();
    const auto now = std::chrono::system_clock::now();
    auto v = policy_at(k);
    if (!v) continue;
    auto r = resolve(*v);
    if (!r.ok() || r.policy->meta.deleting || !r.policy->consumes_topic()) continue;
    const auto& pol = *r.policy;
    const auto& prod = *r.product;
    auto prod_view = product_at(prod.meta.key());
    int32_t partitions = prod_view ? prod_view->topic_partitions : 0;
    if (partitions <= 0) continue;  // the topic is not there yet
    try {
      auto hw = watermarks.find(prod.topic.name);
      if (hw == watermarks.end()) {
        hw = watermarks.emplace(prod.topic.name, kafka_.high_watermarks(prod.topic.name, partitions)).first;
        std::lock_guard g(lag_mu_);
        auto& h = history_[prod.topic.name];
        for (const auto& [part, mark] : hw->second) h[part].record(now, mark);
      }
      auto committed = kafka_.committed(pol.consumer_group(), prod.topic.name, partitions);
      std::lock_guard g(lag_mu_);
      lag_estimate e = estimate_lag(committed, hw->second, history_[prod.topic.name], now);
      prometheus::Labels labels{{"namespace", pol.meta.ns}, {"policy", pol.meta.name}, {"product", prod.meta.key()}};
      lag_events_.Add(labels).Set(static_cast<double>(e.events));
      lag_seconds_.Add(labels).Set(e.seconds);
      max_lag_.Add(labels).Set(std::chrono::duration<double>(pol.max_lag_duration).count());
      auto& st = lag_[pol.meta.key()];
      // The status gets the lag only when a reader of `kubectl get dsp` would see a difference:
      // the budget or caught-up verdict flips, the figures move by half, or 5 minutes passed
      // (observedAt). The metrics above carry every measurement; writing every poll would be a
      // status write per policy per poll interval on the API server.
      const double budget = std::chrono::duration<double>(pol.max_lag_duration).count();
      auto within = [&](const lag_estimate& x) { return x.events == 0 || x.seconds <= budget; };
      auto caught_up = [](const lag_estimate& x) { return x.committed && x.events == 0; };
      auto moved = [](double before, double after, double floor) {
        double d = std::abs(after - before);
        return d >= floor && d >= 0.5 * std::max(std::abs(before), std::abs(after));
      };
      bool first = st.observed_at == wall_time{};
      bool material = first || st.estimate.committed != e.committed || within(st.estimate) != within(e) ||
                      caught_up(st.estimate) != caught_up(e) ||
                      moved(static_cast<double>(st.estimate.events), static_cast<double>(e.events), 1.0) ||
                      moved(st.estimate.seconds, e.seconds, 1.0) || now - st.observed_at > std::chrono::minutes(5);
      if (material) {
        st = {e, now};
        changed.push_back(pol.meta.key());
      }
    } catch (const kafka_error& e) {
      log::warn("lag measurement failed", {{"policy", pol.meta.key()}, {"error", e.what()}});
    }
  }
  for (const auto& k : changed) policy_controller_->queue().add(k);
  if (!lag_sweep_.empty()) return {.requeue_after = std::chrono::milliseconds(1)};
  return {.requeue_after = options_.lag_interval};
}

}  // namespace datashare::controllers
