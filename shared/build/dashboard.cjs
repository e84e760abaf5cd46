// The CloudWatch dashboard for serverless.yml.
/** The CloudWatch dashboard: rollout metrics, dead letters, function errors and durations. */
module.exports.dashboardBody = async ({ resolveVariable }) => {
  const service = await resolveVariable('self:service');
  const stage = await resolveVariable('sls:stage');
  const functions = Object.keys(await resolveVariable('self:functions'));
  const metric = (name, stat = 'Sum') => [
    'SecretsFanout',
    name,
    'service',
    'secrets-fanout',
    { stat },
  ];
  const widget = (title, metrics, x, y) => ({
    type: 'metric',
    x,
    y,
    width: 12,
    height: 6,
    properties: { title, metrics, region: '${AWS::Region}', view: 'timeSeries', period: 300 },
  });
  const body = {
    widgets: [
      widget(
        'Instances',
        [
          'InstancesTargeted',
          'InstancesSucceeded',
          'InstancesFailed',
          'InstancesUnreachable',
          'InstancesRetried',
        ].map((m) => metric(m)),
        0,
        0,
      ),
      widget(
        'Rollouts',
        [metric('RolloutsSettled'), metric('RolloutsFailed'), metric('RolloutDuration', 'Maximum')],
        12,
        0,
      ),
      widget(
        'Drift repair (files rewritten by scheduled runs; runs)',
        [metric('DriftRepaired'), metric('DriftRuns')],
        0,
        12,
      ),
      widget(
        'Staged rollouts (stages passed; rollouts halted)',
        [metric('StagesPassed'), metric('RolloutsHalted')],
        12,
        12,
      ),
      widget(
        'Dead-letter queue',
        [
          [
            'AWS/SQS',
            'ApproximateNumberOfMessagesVisible',
            'QueueName',
            '${DeadLetterQueue.QueueName}',
          ],
        ],
        0,
        6,
      ),
      widget(
        'Function errors',
        functions.map((f) => ['AWS/Lambda', 'Errors', 'FunctionName', `${service}-${stage}-${f}`]),
        12,
        6,
      ),
    ],
  };
  return { 'Fn::Sub': JSON.stringify(body) };
};
