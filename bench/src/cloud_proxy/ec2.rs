//! The EC2 Query protocol: `Action=…` and `InstanceId.N=…` in a form body or the query string;
//! the instance ids of a `RunInstances` answer.

use super::{Kind, Seen};

/// What an EC2 request is: its action, and the instances it names.
pub fn request(query: Option<&str>, body: &[u8]) -> Seen {
    let mut params = query.map(|q| pairs(q.as_bytes())).unwrap_or_default();
    params.extend(pairs(body));
    let action = params.iter().find(|(k, _)| k == "Action").map_or_else(|| "?".to_string(), |(_, v)| v.clone());
    let instances = params.iter().filter(|(k, _)| k.starts_with("InstanceId.")).map(|(_, v)| v.clone()).collect();
    Seen::new(action.clone(), kind(&action), instances)
}

/// What an action does to instances.
pub fn kind(action: &str) -> Kind {
    match action {
        "RunInstances" => Kind::Create,
        "DescribeInstances" => Kind::Describe,
        "TerminateInstances" => Kind::Delete,
        _ => Kind::Other,
    }
}

/// Completes `seen` from the answer: a `RunInstances` names the instances it launched.
pub fn answer(seen: &mut Seen, body: &[u8]) {
    if seen.kind == Kind::Create {
        seen.instances = instance_ids_in(&String::from_utf8_lossy(body));
    }
}

/// The decoded pairs of a form body or query string.
fn pairs(form: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(form).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The distinct `<instanceId>` values of an EC2 XML answer, in order.
fn instance_ids_in(xml: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (_, rest) in xml.match_indices("<instanceId>").map(|(i, tag)| xml.split_at(i + tag.len())) {
        if let Some((id, _)) = rest.split_once("</instanceId>")
            && !ids.iter().any(|known| known == id)
        {
            ids.push(id.to_string());
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_are_decoded() {
        let found = pairs(b"Action=DescribeInstances&InstanceId.1=i-1&Filter.1.Name=tag%3Agantry%3Ahost");
        assert_eq!(found[0], ("Action".to_string(), "DescribeInstances".to_string()));
        assert_eq!(found[1], ("InstanceId.1".to_string(), "i-1".to_string()));
        assert_eq!(found[2].1, "tag:gantry:host");
    }

    #[test]
    fn requests_name_their_action_kind_and_instances() {
        let seen = request(Some("Version=2016-11-15"), b"Action=TerminateInstances&InstanceId.1=i-1&InstanceId.2=i-2");
        assert_eq!((seen.action.as_str(), seen.kind), ("TerminateInstances", Kind::Delete));
        assert_eq!(seen.instances, ["i-1", "i-2"]);
        let other = request(None, b"Action=CreateVpc&CidrBlock=10.0.0.0%2F16");
        assert_eq!((other.kind, other.instances.len()), (Kind::Other, 0));
        assert_eq!(request(None, b"").action, "?");
    }

    #[test]
    fn a_run_instances_answer_names_its_instances_once() {
        let xml = "<RunInstancesResponse><instancesSet><item><instanceId>i-0a</instanceId>\
                   <networkInterfaceSet><item><attachment><instanceId>i-0a</instanceId></attachment></item>\
                   </networkInterfaceSet></item><item><instanceId>i-0b</instanceId></item></instancesSet>";
        assert_eq!(instance_ids_in(xml), ["i-0a", "i-0b"]);
        assert!(instance_ids_in("<Error/>").is_empty());
        let mut seen = request(None, b"Action=RunInstances&MinCount=1");
        answer(&mut seen, xml.as_bytes());
        assert_eq!((seen.kind, seen.instances.len()), (Kind::Create, 2));
    }
}
