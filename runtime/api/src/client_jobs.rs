//! The typed client's methods for jobs and their runs (see the route list in [`crate::client`]).

use crate::client::{Client, ClientError, encode};
use crate::job::{Job, JobDefinition, JobRun};
use reqwest::Method;

impl Client {
    /// `GET /api/v1/jobs`.
    pub async fn list_jobs(&self) -> Result<Vec<Job>, ClientError> {
        self.call(Method::GET, "/api/v1/jobs", None::<&()>).await
    }

    /// `GET /api/v1/jobs/{id}`.
    pub async fn get_job(&self, id: &str) -> Result<Job, ClientError> {
        self.call(Method::GET, &format!("/api/v1/jobs/{}", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/jobs`: create; 409 if a job or an app has the id.
    pub async fn create_job(&self, definition: &JobDefinition) -> Result<Job, ClientError> {
        self.call(Method::POST, "/api/v1/jobs", Some(definition)).await
    }

    /// `PUT /api/v1/jobs/{id}`: create, or replace the definition (active runs keep running).
    pub async fn put_job(&self, definition: &JobDefinition) -> Result<Job, ClientError> {
        self.call(Method::PUT, &format!("/api/v1/jobs/{}", encode(&definition.id)), Some(definition)).await
    }

    /// `DELETE /api/v1/jobs/{id}`: forgets the job and its history; 409 while runs are active
    /// unless `stop_current_runs`, which stops them.
    pub async fn delete_job(&self, id: &str, stop_current_runs: bool) -> Result<Job, ClientError> {
        let path = format!("/api/v1/jobs/{}?stop_current_runs={stop_current_runs}", encode(id));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /api/v1/jobs/{id}/runs`: starts a run now.
    pub async fn start_job_run(&self, id: &str) -> Result<JobRun, ClientError> {
        self.call(Method::POST, &format!("/api/v1/jobs/{}/runs", encode(id)), None::<&()>).await
    }

    /// `GET /api/v1/jobs/{id}/runs`: active and finished runs, newest first.
    pub async fn list_job_runs(&self, id: &str) -> Result<Vec<JobRun>, ClientError> {
        self.call(Method::GET, &format!("/api/v1/jobs/{}/runs", encode(id)), None::<&()>).await
    }

    /// `GET /api/v1/jobs/{id}/runs/{run}`.
    pub async fn get_job_run(&self, id: &str, run: &str) -> Result<JobRun, ClientError> {
        self.call(Method::GET, &format!("/api/v1/jobs/{}/runs/{}", encode(id), encode(run)), None::<&()>).await
    }

    /// `POST /api/v1/jobs/{id}/runs/{run}/stop`: kills its task; the run ends FAILED.
    pub async fn stop_job_run(&self, id: &str, run: &str) -> Result<JobRun, ClientError> {
        let path = format!("/api/v1/jobs/{}/runs/{}/stop", encode(id), encode(run));
        self.call(Method::POST, &path, None::<&()>).await
    }
}
