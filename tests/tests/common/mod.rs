//! What more than one integration test needs and the test support library
//! cannot hold (it uses dev-dependencies, such as the CloudFormation client).

use tether_tests::moto::BoxError;

/// Logical id to physical id of every resource of `stack`, every page.
pub async fn stack_resources(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<std::collections::BTreeMap<String, String>, BoxError> {
    let mut physical = std::collections::BTreeMap::new();
    let mut token = None;
    loop {
        let page = cfn
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(token)
            .send()
            .await?;
        for r in page.stack_resource_summaries() {
            // moto also lists a nameless entry for each resource it skipped.
            if let (Some(logical), Some(id)) = (r.logical_resource_id(), r.physical_resource_id())
                && !logical.is_empty()
            {
                physical.insert(logical.to_owned(), id.to_owned());
            }
        }
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(physical),
        }
    }
}
