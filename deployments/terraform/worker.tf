# The Prefect ECS worker: one always-on Fargate task polling the totes-ecs work pool.
resource "aws_ecs_task_definition" "worker" {
  family                   = "${var.name}-worker"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.worker.arn
  # The root filesystem is read-only; the home (and Prefect's, ~/.prefect) is an ephemeral task volume.
  volume {
    name = "worker-home"
  }
  container_definitions = jsonencode([
    {
      name                   = "worker"
      image                  = var.prefect_image
      essential              = true
      readonlyRootFilesystem = true
      # Never creates the pool: `prefect work-pool create` does, from the template of the output
      # work_pool_base_job_template (docs/guides/production-ecs.md, "Run it in production"); until then the worker waits.
      command = ["prefect", "worker", "start", "--pool", local.pool_name, "--type", "ecs", "--no-create-pool-if-not-found"]
      # HOME, not PREFECT_HOME: the worker passes every Prefect setting of its own environment on to
      # the flow runs' containers, where /worker-home does not exist. Prefect's home is ~/.prefect.
      environment = [
        { name = "PREFECT_API_URL", value = var.prefect_api_url },
        { name = "HOME", value = "/worker-home" },
      ]
      mountPoints = [
        { sourceVolume = "worker-home", containerPath = "/worker-home", readOnly = false },
      ]
      secrets = [
        { name = "PREFECT_API_KEY", valueFrom = aws_secretsmanager_secret.prefect_api_key.arn },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.worker.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "worker"
        }
      }
    }
  ])
}

resource "aws_ecs_service" "worker" {
  name            = "${var.name}-worker"
  cluster         = aws_ecs_cluster.totes.id
  task_definition = aws_ecs_task_definition.worker.arn
  desired_count   = 1
  launch_type     = "FARGATE"
  network_configuration {
    subnets          = var.worker_subnet_ids
    security_groups  = var.worker_security_group_ids
    assign_public_ip = false
  }
}

# The work pool's base job template: the committed one with the flow-run tasks' network. Flow runs use
# the worker's subnets and security groups, and get no public IP.
module "work_pool_template" {
  source             = "./modules/work_pool_template"
  subnet_ids         = var.worker_subnet_ids
  security_group_ids = var.worker_security_group_ids
}
