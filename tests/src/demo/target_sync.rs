//! The target-sync part of the demo.

use crate::moto::BoxError;

pub async fn run() -> Result<(), BoxError> {
    Ok(())
}
