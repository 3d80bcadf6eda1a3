#!/usr/bin/env python3
import os
import json
import sys
from datetime import datetime

def get_script_parameters():
    """从环境变量获取参数"""
    try:
        params_str = os.environ.get('SCRIPT_PARAMETERS', '{}')
        return json.loads(params_str)
    except json.JSONDecodeError:
        return {}

def process_data(parameters):
    """The one part a seed user writes: here, the seed's example's own work."""
    message = parameters.get('message', 'Hello World!')
    return {'original_message': message, 'multiplied_message': ' '.join([message] * 2)}

def main():
    """主要业务逻辑"""
    try:
        parameters = get_script_parameters()
        page_context = os.environ.get('PAGE_CONTEXT', 'unknown')
        script_name = os.environ.get('SCRIPT_NAME', 'unknown')
        
        # 业务逻辑处理
        result = process_data(parameters)
        
        # 输出标准JSON格式
        output = {
            'status': 'success',
            'message': '执行成功',
            'data': result,
            'metadata': {
                'script_name': script_name,
                'execution_time': datetime.now().isoformat()
            }
        }
        
        print(json.dumps(output, ensure_ascii=False, indent=2))
        
    except Exception as e:
        error_output = {
            'status': 'error',
            'message': str(e),
            'error_type': type(e).__name__
        }
        print(json.dumps(error_output, ensure_ascii=False))
        sys.exit(1)

if __name__ == '__main__':
    main()
