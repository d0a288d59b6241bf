//! `Custom::EmptyBucket`: on Delete, removes every object, object version and
//! delete marker of a bucket, so that CloudFormation can delete the bucket
//! (a versioned one included). Create and Update only validate.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use serde_json::Value;
use tokio::time::Instant;
use tracing::info;

use super::dispatch::{Applied, Failure};
use super::event::blank_as_absent;
use crate::aws::AwsError;
use crate::config::validate_bucket;
use crate::fields::{FieldError, Fields};

pub const TYPE: &str = "Custom::EmptyBucket";
/// DeleteObjects takes at most 1000 keys; ListObjectVersions returns at most 1000 entries.
const BATCH: i32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Props {
    pub bucket: String,
}

impl Props {
    pub fn read(properties: &Value) -> Result<Props, FieldError> {
        let properties = &blank_as_absent(properties);
        let mut f = Fields::new("ResourceProperties", properties)?;
        f.string("ServiceToken")?;
        // CloudFormation passes the resource's own timeout along; not used here.
        f.number("ServiceTimeout", 1..=3600)?;
        let bucket = validate_bucket(&f.required_string("BucketName")?)
            .map_err(|e| FieldError::new(f.at("BucketName"), e.problem))?;
        f.finish()?;
        Ok(Props { bucket })
    }

    /// Identity: the bucket. Another bucket is another resource, and the old
    /// one is emptied when CloudFormation deletes the replaced resource.
    pub fn physical_id(&self) -> String {
        format!("tether-empty-bucket:{}", self.bucket)
    }
}

/// Deletes every version and delete marker of `bucket`, a page at a time,
/// listing again from the start until nothing is left (objects written
/// meanwhile go too). A missing bucket is already empty. Returns the count.
pub async fn empty(s3: &Client, bucket: &str, deadline: Instant) -> Result<usize, Failure> {
    let fail = |e: AwsError| Failure(format!("emptying bucket {bucket}: {e}"));
    let mut deleted = 0;
    loop {
        if Instant::now() >= deadline {
            return Err(Failure(format!(
                "emptying bucket {bucket}: {deleted} versions deleted, more remain and the Lambda deadline nears; delete the stack again to continue"
            )));
        }
        let page = match s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(BATCH)
            .send()
            .await
        {
            Ok(page) => page,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.meta().code() == Some("NoSuchBucket")) =>
            {
                info!(bucket, deleted, "bucket does not exist: nothing to empty");
                return Ok(deleted);
            }
            Err(e) => {
                return Err(fail(AwsError::from_sdk(
                    "s3:ListObjectVersions",
                    bucket,
                    &e,
                )));
            }
        };
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        let objects: Vec<ObjectIdentifier> = versions
            .chain(markers)
            .filter_map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key?)
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect();
        if objects.is_empty() {
            info!(bucket, deleted, "bucket emptied");
            return Ok(deleted);
        }
        let count = objects.len();
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| Failure(format!("emptying bucket {bucket}: {e}")))?;
        let out = s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| fail(AwsError::from_sdk("s3:DeleteObjects", bucket, &e)))?;
        if let Some(first) = out.errors().first() {
            return Err(Failure(format!(
                "emptying bucket {bucket}: {} of {count} deletions failed, e.g. {} (version {}): {} {}",
                out.errors().len(),
                first.key().unwrap_or("?"),
                first.version_id().unwrap_or("-"),
                first.code().unwrap_or(""),
                first.message().unwrap_or("")
            )));
        }
        deleted += count;
    }
}

pub async fn delete(s3: &Client, props: &Props, deadline: Instant) -> Result<Applied, Failure> {
    let count = empty(s3, &props.bucket, deadline).await?;
    Ok(Applied {
        physical_id: props.physical_id(),
        data: Default::default(),
        note: Some(format!(
            "deleted {count} object versions and delete markers from {}",
            props.bucket
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bucket_name_is_required_and_validated() {
        let p =
            Props::read(&json!({"ServiceToken": "arn:x", "BucketName": "tether-state-1"})).unwrap();
        assert_eq!(p.physical_id(), "tether-empty-bucket:tether-state-1");
        let err = Props::read(&json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ResourceProperties.BucketName: is required"
        );
        let err = Props::read(&json!({"BucketName": "No_Such"})).unwrap_err();
        assert!(err.to_string().contains("No_Such"), "{err}");
        let err = Props::read(&json!({"BucketName": "abc", "Bucket": "x"})).unwrap_err();
        assert_eq!(err.location, "ResourceProperties.Bucket");
    }
}
