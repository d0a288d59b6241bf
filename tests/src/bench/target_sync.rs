//! The target-sync part of the bench.

use super::Section;
use crate::moto::BoxError;

pub async fn run() -> Result<Vec<Section>, BoxError> {
    Ok(Vec::new())
}
