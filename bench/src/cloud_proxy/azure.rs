//! Azure Resource Manager's REST shapes (`/subscriptions/S/…/providers/NS/type/name…`): the
//! operation (`virtualMachines.createOrUpdate`, `Microsoft.Compute/operations.get`), what it does
//! to VMs, and which VM it names. An async operation's status URLs (`Azure-AsyncOperation`,
//! `Location`) do not name the VM: the proxy learns them from the answer of the VM's create or
//! delete ([`operation_paths`]) and names the VM on their polls.
//!
//! The status URLs point at the emulator; [`redirect`] points them at the proxy instead, so that
//! the polls come through it (what a reverse proxy does to `Location`).

use super::{Kind, Seen};
use axum::http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

/// The headers that carry an async operation's status URLs.
const OPERATION_HEADERS: [&str; 2] = ["azure-asyncoperation", "location"];

/// What a Resource Manager request is.
pub fn request(method: &Method, path: &str) -> Seen {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (namespace, rest) = match segments.iter().rposition(|s| s.eq_ignore_ascii_case("providers")) {
        Some(i) if i + 1 < segments.len() => (segments[i + 1], &segments[i + 2..]),
        // No provider: /subscriptions/S/resourcegroups/G, /subscriptions/S/operationresults/ID.
        _ => ("Microsoft.Resources", segments.get(2..).unwrap_or_default()),
    };
    let named = rest.len() % 2 == 0 && !rest.is_empty();
    let (kind_name, verb, name) = match (rest, method) {
        ([.., kind, name], &Method::GET) if named => (*kind, "get", Some(*name)),
        ([.., kind, name], &Method::PUT) if named => (*kind, "createOrUpdate", Some(*name)),
        ([.., kind, name], &Method::PATCH) if named => (*kind, "update", Some(*name)),
        ([.., kind, name], &Method::DELETE) if named => (*kind, "delete", Some(*name)),
        ([.., kind, name], &Method::HEAD) if named => (*kind, "checkExistence", Some(*name)),
        ([.., kind, name, action], &Method::POST) => (*kind, *action, Some(*name)),
        ([.., kind], _) => (*kind, "list", None),
        _ => ("subscriptions", "get", None),
    };
    let poll = ["operations", "operationResults"].iter().any(|k| k.eq_ignore_ascii_case(kind_name));
    let vm = namespace.eq_ignore_ascii_case("Microsoft.Compute") && kind_name.eq_ignore_ascii_case("virtualMachines");
    let kind = match verb {
        _ if poll => Kind::Poll,
        "createOrUpdate" if vm => Kind::Create,
        "get" | "list" if vm => Kind::Describe,
        "delete" if vm => Kind::Delete,
        _ => Kind::Other,
    };
    let action = if poll { format!("{namespace}/{kind_name}.get") } else { format!("{kind_name}.{verb}") };
    let instances = match (kind, name) {
        (Kind::Create | Kind::Describe | Kind::Delete, Some(name)) => vec![name.to_string()],
        _ => Vec::new(),
    };
    Seen::new(action, kind, instances)
}

/// Completes `seen` from a successful answer: a describe tells which VMs its instance views
/// showed running (a GET without `$expand=instanceView` shows none).
pub fn answer(seen: &mut Seen, body: &[u8]) {
    if seen.kind != Kind::Describe {
        return;
    }
    let Ok(answer) = serde_json::from_slice::<Value>(body) else { return };
    let running = |vm: &Value| {
        let statuses = vm.pointer("/properties/instanceView/statuses")?.as_array()?;
        let up = statuses.iter().any(|s| s.get("code").and_then(Value::as_str) == Some("PowerState/running"));
        up.then(|| vm.get("name")?.as_str().map(str::to_string)).flatten()
    };
    seen.ready = match answer.get("value").and_then(Value::as_array) {
        Some(vms) => vms.iter().filter_map(running).collect(),
        None => running(&answer).into_iter().collect(),
    };
}

/// The paths of the status URLs an answer points at (to learn which VM their polls are about).
pub fn operation_paths(headers: &HeaderMap) -> Vec<String> {
    OPERATION_HEADERS
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .map(|url| path_of(url).to_string())
        .collect()
}

/// The path of a URL (`http://host:port/a/b?x=1` → `/a/b`), or of a path with a query.
pub fn path_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.contains("://") { after_scheme.find('/').map_or("/", |i| &after_scheme[i..]) } else { url };
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Points the status URLs of an answer that start with `from` (the emulator) at `to` (the
/// proxy).
pub fn redirect(headers: &mut HeaderMap, from: &str, to: &str) {
    for name in OPERATION_HEADERS {
        let moved = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|url| url.strip_prefix(from))
            .and_then(|rest| HeaderValue::from_str(&format!("{to}{rest}")).ok());
        if let Some(value) = moved {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMS: &str = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines";

    fn seen(method: Method, path: &str) -> (String, Kind, Vec<String>) {
        let s = request(&method, path);
        (s.action, s.kind, s.instances)
    }

    #[test]
    fn vm_calls_name_their_vm() {
        let one = format!("{VMS}/workers-2");
        assert_eq!(
            seen(Method::PUT, &one),
            ("virtualMachines.createOrUpdate".into(), Kind::Create, vec!["workers-2".into()])
        );
        assert_eq!(seen(Method::GET, &one), ("virtualMachines.get".into(), Kind::Describe, vec!["workers-2".into()]));
        assert_eq!(
            seen(Method::DELETE, &one),
            ("virtualMachines.delete".into(), Kind::Delete, vec!["workers-2".into()])
        );
        assert_eq!(seen(Method::GET, VMS), ("virtualMachines.list".into(), Kind::Describe, vec![]));
        let all = "/subscriptions/s/providers/Microsoft.Compute/virtualMachines";
        assert_eq!(seen(Method::GET, all).1, Kind::Describe);
        let lower = "/subscriptions/s/resourcegroups/g/providers/microsoft.compute/virtualmachines/m";
        assert_eq!(seen(Method::PUT, lower).1, Kind::Create);
        let start = seen(Method::POST, &format!("{one}/start"));
        assert_eq!((start.0.as_str(), start.1), ("virtualMachines.start", Kind::Other));
    }

    #[test]
    fn status_urls_are_polls_and_other_resources_are_other() {
        let compute = "/subscriptions/s/providers/Microsoft.Compute/locations/westeurope/operations/op-1";
        assert_eq!(seen(Method::GET, compute), ("Microsoft.Compute/operations.get".into(), Kind::Poll, vec![]));
        let network = "/subscriptions/s/providers/Microsoft.Network/locations/westeurope/operationResults/op-2";
        assert_eq!(seen(Method::GET, network).1, Kind::Poll);
        let group = "/subscriptions/s/operationresults/op-3";
        assert_eq!(seen(Method::GET, group), ("Microsoft.Resources/operationresults.get".into(), Kind::Poll, vec![]));
        let nic = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/workers-2-nic";
        assert_eq!(seen(Method::PUT, nic), ("networkInterfaces.createOrUpdate".into(), Kind::Other, vec![]));
        assert_eq!(seen(Method::PUT, "/subscriptions/s/resourcegroups/g").0, "resourcegroups.createOrUpdate");
    }

    #[test]
    fn status_urls_are_learnt_by_path_and_redirected_to_the_proxy() {
        let mut headers = HeaderMap::new();
        let status = "http://127.0.0.1:9/subscriptions/s/providers/Microsoft.Compute/locations/l/operations/op";
        headers.insert("azure-asyncoperation", HeaderValue::from_str(&format!("{status}?api-version=1")).expect("ok"));
        headers.insert("location", HeaderValue::from_static("http://127.0.0.1:9/x?monitor=true"));
        headers.insert("retry-after", HeaderValue::from_static("1"));
        assert_eq!(
            operation_paths(&headers),
            ["/subscriptions/s/providers/Microsoft.Compute/locations/l/operations/op", "/x"]
        );
        redirect(&mut headers, "http://127.0.0.1:9", "http://127.0.0.1:7");
        assert_eq!(headers["location"], "http://127.0.0.1:7/x?monitor=true");
        assert!(
            headers["azure-asyncoperation"].to_str().expect("text").starts_with("http://127.0.0.1:7/subscriptions/")
        );
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(path_of("/a/b?c=d"), "/a/b");
        let mut get = request(&Method::GET, &format!("{VMS}/m"));
        let view = r#"{"name":"m","properties":{"instanceView":{"statuses":[
            {"code":"ProvisioningState/succeeded"},{"code":"PowerState/running"}]}}}"#;
        answer(&mut get, view.as_bytes());
        assert_eq!(get.ready, ["m"]);
        let mut list = request(&Method::GET, VMS);
        answer(
            &mut list,
            br#"{"value":[{"name":"a","properties":{}},{"name":"b","properties":{"instanceView":
            {"statuses":[{"code":"PowerState/running"}]}}}]}"#,
        );
        assert_eq!(list.ready, ["b"]);
        assert_eq!(path_of("http://h:1"), "/");
    }
}
