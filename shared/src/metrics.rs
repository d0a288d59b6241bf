//! CloudWatch metrics, standard resolution (Route 53 health checks need it).

use std::future::Future;
use std::time::SystemTime;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::aws::AwsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    None,
}

/// One metric with its dimensions and one or more values (with counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    pub unit: Unit,
    /// `(value, count)` pairs: a value observed `count` times.
    pub values: Vec<(f64, f64)>,
    /// When the values were observed; `None`: when CloudWatch receives them.
    pub timestamp: Option<SystemTime>,
}

impl Datum {
    pub fn new(
        name: &'static str,
        dimensions: &[(&'static str, String)],
        unit: Unit,
        value: f64,
    ) -> Self {
        Self {
            name,
            dimensions: dimensions.to_vec(),
            unit,
            values: vec![(value, 1.0)],
            timestamp: None,
        }
    }

    /// The same datum, observed at `time`.
    pub fn at(mut self, time: SystemTime) -> Self {
        self.timestamp = Some(time);
        self
    }

    pub fn count(name: &'static str, dimensions: &[(&'static str, String)], n: usize) -> Self {
        Self::new(name, dimensions, Unit::Count, n as f64)
    }
}

pub trait Metrics: Send + Sync {
    fn publish(
        &self,
        namespace: &str,
        data: &[Datum],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// [`Metrics`] through CloudWatch PutMetricData.
#[derive(Clone)]
pub struct CloudWatch {
    client: Client,
}

impl CloudWatch {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn datum(d: &Datum) -> MetricDatum {
    let unit = match d.unit {
        Unit::Count => StandardUnit::Count,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::None => StandardUnit::None,
    };
    let dimensions = d
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(*name).value(value).build())
        .collect();
    MetricDatum::builder()
        .metric_name(d.name)
        .set_dimensions(Some(dimensions))
        .unit(unit)
        .storage_resolution(60)
        .set_timestamp(
            d.timestamp
                .map(aws_sdk_cloudwatch::primitives::DateTime::from),
        )
        .set_values(Some(d.values.iter().map(|(v, _)| *v).collect()))
        .set_counts(Some(d.values.iter().map(|(_, c)| *c).collect()))
        .build()
}

impl Metrics for CloudWatch {
    async fn publish(&self, namespace: &str, data: &[Datum]) -> Result<(), AwsError> {
        for chunk in data.chunks(crate::aws::limits::METRIC_DATA_PER_CALL) {
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(chunk.iter().map(datum).collect()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("cloudwatch:PutMetricData", namespace, &e))?;
        }
        Ok(())
    }
}
