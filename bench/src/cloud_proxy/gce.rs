//! Compute Engine's REST shapes (`/compute/v1/projects/P/…`): the method (named like the
//! discovery document's ids, `instances.insert`, `zoneOperations.get`), what it does to
//! instances, and which instance it names: the path's, an insert's body `name`, or for an
//! operation (the answer of an insert, a delete or an operation poll) its `targetLink`.

use super::{Kind, Seen};
use axum::http::Method;

/// What a Compute Engine request is.
pub fn request(method: &Method, path: &str, body: &[u8]) -> Seen {
    let Some(rest) = path.split_once("/compute/v1/projects/").map(|(_, rest)| rest) else {
        return Seen::new(format!("{method} {path}"), Kind::Other, Vec::new());
    };
    // P / scope… / collection [/ name [/ verb]]
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let (scope, tail) = match parts.get(1..) {
        Some(["global", tail @ ..]) => ("global", tail),
        Some(["aggregated", tail @ ..]) => ("aggregated", tail),
        Some(["zones", _, tail @ ..]) => ("zones", tail),
        Some(["regions", _, tail @ ..]) => ("regions", tail),
        Some(tail) => ("", tail),
        None => ("", &[][..]),
    };
    let Some((&collection, tail)) = tail.split_first() else {
        let action = if parts.len() > 1 { format!("{scope}.get") } else { "projects.get".to_string() };
        return Seen::new(action, Kind::Other, Vec::new());
    };
    let resource = match (collection, scope) {
        ("operations", "zones") => "zoneOperations",
        ("operations", "regions") => "regionOperations",
        ("operations", _) => "globalOperations",
        (collection, _) => collection,
    };
    let verb = match (scope, tail, method) {
        ("aggregated", _, _) => "aggregatedList",
        (_, ["family", _], _) => "getFromFamily",
        (_, [], &Method::POST) => "insert",
        (_, [], _) => "list",
        (_, [_], &Method::GET) => "get",
        (_, [_], &Method::DELETE) => "delete",
        (_, [_], &Method::PATCH) => "patch",
        (_, [_, verb, ..], _) => verb,
        _ => "?",
    };
    let action = format!("{resource}.{verb}");
    let operation = resource.ends_with("Operations");
    let kind = match (collection, verb) {
        ("instances", "insert") => Kind::Create,
        ("instances", "get" | "list" | "aggregatedList") => Kind::Describe,
        ("instances", "delete") => Kind::Delete,
        (_, "get" | "wait") if operation => Kind::Poll,
        _ => Kind::Other,
    };
    let instances = match (collection, verb, tail) {
        ("instances", "insert", _) => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|b| b.get("name")?.as_str().map(str::to_string))
            .into_iter()
            .collect(),
        ("instances", "get" | "delete", [name]) => vec![(*name).to_string()],
        _ => Vec::new(),
    };
    Seen::new(action, kind, instances)
}

/// Completes `seen` from a successful answer: an operation poll names the instance its
/// operation targets; a describe tells which instances it showed RUNNING.
pub fn answer(seen: &mut Seen, body: &[u8]) {
    match seen.kind {
        Kind::Poll => seen.instances.extend(target_instance(body)),
        Kind::Describe => seen.ready = running(body),
        _ => {}
    }
}

/// The RUNNING instances of an `instances.get`, `list` or `aggregatedList` answer.
fn running(body: &[u8]) -> Vec<String> {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let one = |i: &serde_json::Value| {
        (i.get("status")?.as_str()? == "RUNNING").then(|| i.get("name")?.as_str().map(str::to_string)).flatten()
    };
    match answer.get("items") {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(serde_json::Value::Object(scopes)) => {
            scopes.values().filter_map(|scope| scope.get("instances")?.as_array()).flatten().filter_map(one).collect()
        }
        _ => one(&answer).into_iter().collect(),
    }
}

/// The instance an operation's `targetLink` names (`…/zones/Z/instances/NAME`).
fn target_instance(body: &[u8]) -> Option<String> {
    let op: serde_json::Value = serde_json::from_slice(body).ok()?;
    let link = op.get("targetLink")?.as_str()?;
    let (collection, name) = link.trim_end_matches('/').rsplit_once('/')?;
    collection.ends_with("/instances").then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "/compute/v1/projects/p/zones/europe-west1-b";

    fn seen(method: Method, path: &str, body: &str) -> (String, Kind, Vec<String>) {
        let s = request(&method, path, body.as_bytes());
        (s.action, s.kind, s.instances)
    }

    #[test]
    fn instance_calls_name_their_instance() {
        let insert = seen(Method::POST, &format!("{ZONE}/instances"), r#"{"name":"workers-3","machineType":"x"}"#);
        assert_eq!(insert, ("instances.insert".into(), Kind::Create, vec!["workers-3".into()]));
        let get = seen(Method::GET, &format!("{ZONE}/instances/workers-3"), "");
        assert_eq!(get, ("instances.get".into(), Kind::Describe, vec!["workers-3".into()]));
        let delete = seen(Method::DELETE, &format!("{ZONE}/instances/workers-3"), "");
        assert_eq!(delete, ("instances.delete".into(), Kind::Delete, vec!["workers-3".into()]));
        let list = seen(Method::GET, &format!("{ZONE}/instances"), "");
        assert_eq!(list, ("instances.list".into(), Kind::Describe, vec![]));
        let all = seen(Method::GET, "/compute/v1/projects/p/aggregated/instances", "");
        assert_eq!(all, ("instances.aggregatedList".into(), Kind::Describe, vec![]));
    }

    #[test]
    fn operations_are_polls_and_other_resources_are_other() {
        let get = seen(Method::GET, &format!("{ZONE}/operations/operation-1-2"), "");
        assert_eq!((get.0.as_str(), get.1), ("zoneOperations.get", Kind::Poll));
        let wait = seen(Method::POST, "/compute/v1/projects/p/regions/europe-west1/operations/op/wait", "");
        assert_eq!((wait.0.as_str(), wait.1), ("regionOperations.wait", Kind::Poll));
        let global = seen(Method::GET, "/compute/v1/projects/p/global/operations/op", "");
        assert_eq!((global.0.as_str(), global.1), ("globalOperations.get", Kind::Poll));
        let network = seen(Method::POST, "/compute/v1/projects/p/global/networks", r#"{"name":"n"}"#);
        assert_eq!(network, ("networks.insert".into(), Kind::Other, vec![]));
        let start = seen(Method::POST, &format!("{ZONE}/instances/workers-3/start"), "");
        assert_eq!((start.0.as_str(), start.1), ("instances.start", Kind::Other));
        let image = seen(Method::GET, "/compute/v1/projects/debian-cloud/global/images/family/debian-12", "");
        assert_eq!((image.0.as_str(), image.1), ("images.getFromFamily", Kind::Other));
        assert_eq!(seen(Method::GET, "/elsewhere", "").1, Kind::Other);
        assert_eq!(seen(Method::GET, "/compute/v1/projects/p/zones", "").0, "zones.list");
        assert_eq!(seen(Method::GET, "/compute/v1/projects/p/zones/europe-west1-b", "").0, "zones.get");
        assert_eq!(seen(Method::GET, "/compute/v1/projects/p", "").0, "projects.get");
    }

    #[test]
    fn an_operation_names_the_instance_it_targets() {
        let mut poll = request(&Method::GET, &format!("{ZONE}/operations/op"), b"");
        let op = r#"{"name":"op","status":"DONE",
            "targetLink":"https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/master-0"}"#;
        answer(&mut poll, op.as_bytes());
        assert_eq!(poll.instances, ["master-0"]);
        let mut network = request(&Method::GET, "/compute/v1/projects/p/global/operations/op", b"");
        answer(&mut network, br#"{"targetLink":"https://x/compute/v1/projects/p/global/networks/n"}"#);
        assert!(network.instances.is_empty());
        answer(&mut network, b"not json");
        assert!(network.instances.is_empty());
    }

    #[test]
    fn describes_tell_which_instances_run() {
        let mut get = request(&Method::GET, &format!("{ZONE}/instances/m-0"), b"");
        answer(&mut get, br#"{"kind":"compute#instance","name":"m-0","status":"RUNNING"}"#);
        assert_eq!(get.ready, ["m-0"]);
        let mut staging = request(&Method::GET, &format!("{ZONE}/instances/m-0"), b"");
        answer(&mut staging, br#"{"name":"m-0","status":"STAGING"}"#);
        assert!(staging.ready.is_empty());
        let mut list = request(&Method::GET, &format!("{ZONE}/instances"), b"");
        answer(&mut list, br#"{"items":[{"name":"a","status":"RUNNING"},{"name":"b","status":"PROVISIONING"}]}"#);
        assert_eq!(list.ready, ["a"]);
        let mut all = request(&Method::GET, "/compute/v1/projects/p/aggregated/instances", b"");
        let body = r#"{"items":{"zones/a":{"instances":[{"name":"x","status":"RUNNING"}]},
            "zones/b":{"warning":{"code":"NO_RESULTS_ON_PAGE"}}}}"#;
        answer(&mut all, body.as_bytes());
        assert_eq!(all.ready, ["x"]);
    }
}
