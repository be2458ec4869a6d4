# The ECS work pool's base job template: the committed deployments/ecs-base-job-template.json with the
# defaults only Terraform knows set on its variables (the flow-run tasks' subnets and security groups).
# No provider and no resource: `terraform init` and `apply` of this folder alone work offline, which is
# how tests/integration/test_ecs_worker.py checks it.

variable "subnet_ids" {
  description = "Subnets of the flow-run tasks (private: the template assigns no public IP)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the flow-run tasks."
  type        = list(string)
}

locals {
  committed = jsondecode(file("${path.module}/../../../ecs-base-job-template.json"))
  defaults = {
    subnets         = var.subnet_ids
    security_groups = var.security_group_ids
  }
  properties = merge(local.committed.variables.properties, {
    for name, value in local.defaults : name => merge(local.committed.variables.properties[name], { default = value })
  })
  template = merge(local.committed, {
    variables = merge(local.committed.variables, { properties = local.properties })
  })
}

output "base_job_template" {
  description = "The work pool's base job template, as JSON (prefect work-pool create --base-job-template)."
  value       = jsonencode(local.template)
}
