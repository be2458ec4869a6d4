output "lake_url" {
  description = "TOTES_LAKE_URL for the deployments (TOTES_DEPLOY_LAKE_URL)."
  value       = "s3://${aws_s3_bucket.lake.bucket}/${var.lake_prefix}"
}

output "ecr_repository_url" {
  description = "TOTES_DEPLOY_ECR_REPOSITORY_URL."
  value       = aws_ecr_repository.totes.repository_url
}

output "ecs_cluster" {
  description = "TOTES_DEPLOY_ECS_CLUSTER."
  value       = aws_ecs_cluster.totes.name
}

output "task_role_arn" {
  description = "TOTES_DEPLOY_TASK_ROLE_ARN."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "TOTES_DEPLOY_EXECUTION_ROLE_ARN."
  value       = aws_iam_role.execution.arn
}

output "alert_topic_arn" {
  description = "TOTES_DEPLOY_ALERT_TOPIC_ARN."
  value       = aws_sns_topic.alerts.arn
}

output "work_pool" {
  description = "The Prefect work pool the worker polls."
  value       = local.pool_name
}
