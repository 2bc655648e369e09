//! The typed client's methods for the agents' image caches: `GET /api/v1/agents/{id}/images`
//! and `POST /api/v1/agents/{id}/images/prune` (the master asks the agent; see [`crate::image`]).

use crate::client::{Client, ClientError, encode};
use crate::image::{AgentImages, AgentImagesPruned, PruneImagesRequest};
use reqwest::Method;

impl Client {
    /// `GET /api/v1/agents/{id}/images`: the images cached on the agent, with the ones live
    /// tasks use. 409 when containers cannot run on the agent (the message says why); 502 when
    /// the agent does not answer.
    pub async fn agent_images(&self, agent_id: &str) -> Result<AgentImages, ClientError> {
        self.call(Method::GET, &format!("/api/v1/agents/{}/images", encode(agent_id)), None::<&()>).await
    }

    /// `POST /api/v1/agents/{id}/images/prune`: removes least recently used images no live task
    /// uses until the cache is at most its size, or with `all` every image no live task uses.
    pub async fn prune_agent_images(&self, agent_id: &str, all: bool) -> Result<AgentImagesPruned, ClientError> {
        let path = format!("/api/v1/agents/{}/images/prune", encode(agent_id));
        self.call(Method::POST, &path, Some(&PruneImagesRequest { all })).await
    }
}
